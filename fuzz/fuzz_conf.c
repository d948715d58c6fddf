/*
 * fuzz_conf: registryd's config file reader (rd_conf_load_file and the
 * check after it) and its tokens file reader (rd_auth), over any bytes
 * in a file of mode 0600 (a memfd).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rd_auth.h"
#include "rd_conf.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int   fuzz_fd = -1;
static char  fuzz_path[64];


static void
fuzz_file(const uint8_t *data, size_t size)
{
    if (fuzz_fd == -1) {
        fuzz_fd = memfd_create("fuzz-conf", 0);
        if (fuzz_fd == -1 || fchmod(fuzz_fd, 0600) != 0) {
            abort();
        }

        snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d", fuzz_fd);
    }

    if (ftruncate(fuzz_fd, 0) != 0
        || pwrite(fuzz_fd, data, size, 0) != (ssize_t) size)
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char        err[RD_ERR_LEN], who[RD_AUTH_NAME_MAX + 1];
    rd_auth_t  *auth;
    rd_conf_t   conf;

    fuzz_file(data, size);

    rd_conf_init(&conf);

    if (rd_conf_load_file(&conf, fuzz_path, err) == 0) {
        (void) rd_conf_check(&conf, err);
    }

    rd_conf_free(&conf);

    /* the same bytes as a tokens file */
    rd_conf_init(&conf);
    conf.tokens_file = fuzz_path;

    auth = rd_auth_create(&conf, err);
    conf.tokens_file = NULL;

    if (auth) {
        (void) rd_auth_check(auth, "fuzz-secret-0123456789", NULL,
                             RD_NEED_WRITE, "orders", who, err);
        (void) rd_auth_check(auth, NULL, "CN=fuzz", RD_NEED_READ, "", who,
                             err);
        rd_auth_free(auth);
    }

    rd_conf_free(&conf);

    return 0;
}
