/*
 * check_main: runs the suites of common/, the nginx-free code registryd
 * and the module share (the wire format, the policy model, regexes, the
 * balancer and ring cores), in one SRunner.
 */

#include <check.h>
#include <stdlib.h>


Suite *snapshot_suite(void);
Suite *service_suite(void);
Suite *policy_suite(void);
Suite *regex_suite(void);
Suite *balancer_suite(void);
Suite *chash_suite(void);
Suite *units_suite(void);
Suite *name_suite(void);
Suite *addr_suite(void);
Suite *token_suite(void);
Suite *buf_suite(void);
Suite *accept_suite(void);
Suite *locality_suite(void);


int
main(void)
{
    int       failed;
    SRunner  *sr;

    sr = srunner_create(snapshot_suite());
    srunner_add_suite(sr, service_suite());
    srunner_add_suite(sr, policy_suite());
    srunner_add_suite(sr, regex_suite());
    srunner_add_suite(sr, balancer_suite());
    srunner_add_suite(sr, chash_suite());
    srunner_add_suite(sr, units_suite());
    srunner_add_suite(sr, name_suite());
    srunner_add_suite(sr, addr_suite());
    srunner_add_suite(sr, token_suite());
    srunner_add_suite(sr, buf_suite());
    srunner_add_suite(sr, accept_suite());
    srunner_add_suite(sr, locality_suite());

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
