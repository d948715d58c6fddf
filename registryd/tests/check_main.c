/*
 * check_main: runs every registryd unit suite in one SRunner.
 */

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_suites.h"
#include "rd_log.h"

static char  ck_root[256];


static int
ck_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;

    remove(path);
    return 0;
}


void
ck_rmrf(const char *path)
{
    nftw(path, ck_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}


void
ck_tmpdir(char *out, size_t size)
{
    int  n;

    n = snprintf(out, size, "%s/t.XXXXXX", ck_root);
    ck_assert_int_lt(n, (int) size);
    ck_assert_ptr_nonnull(mkdtemp(out));
}


void
ck_write_file(const char *dir, const char *name, const char *text, char *out,
    size_t size)
{
    FILE  *f;

    ck_assert_int_lt(snprintf(out, size, "%s/%s", dir, name), (int) size);

    f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}


int
main(void)
{
    int       failed;
    SRunner  *sr;

    /* the registry's warnings about skipped store values are expected */
    rd_log_level = RD_LOG_ERROR;

    snprintf(ck_root, sizeof(ck_root), "/tmp/check_registryd.XXXXXX");
    if (mkdtemp(ck_root) == NULL) {
        perror("mkdtemp");
        return 2;
    }

    /* the etcd the etcd store's tests run against */
    if (ck_etcd_start(ck_root) != 0) {
        ck_rmrf(ck_root);
        return EXIT_FAILURE;
    }

    sr = srunner_create(util_suite());
    srunner_add_suite(sr, conf_suite());
    srunner_add_suite(sr, auth_suite());
    srunner_add_suite(sr, store_suite());
    srunner_add_suite(sr, registry_suite());
    srunner_add_suite(sr, snapshot_suite());
    srunner_add_suite(sr, metrics_suite());
    srunner_add_suite(sr, policy_suite());
    srunner_add_suite(sr, health_suite());
    srunner_add_suite(sr, events_suite());
    srunner_add_suite(sr, contract_suite());

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    ck_etcd_stop();
    ck_rmrf(ck_root);

    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
