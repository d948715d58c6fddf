/*
 * check_main: runs the suites of the module's nginx-free balancer and ring
 * cores in one SRunner (the wire format's are in common/tests).
 */

#include <check.h>
#include <stdlib.h>


Suite *balancer_suite(void);
Suite *chash_suite(void);


int
main(void)
{
    int       failed;
    SRunner  *sr;

    sr = srunner_create(balancer_suite());
    srunner_add_suite(sr, chash_suite());

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
