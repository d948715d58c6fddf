/*
 * check_suites: the unit test suites of registryd, one per unit, and the
 * helpers they share (temporary directories under one root that the runner
 * removes at the end, whatever the tests left behind).
 */

#ifndef CHECK_SUITES_H
#define CHECK_SUITES_H

#include <check.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_registry.h"
#include "rd_store.h"

Suite *util_suite(void);
Suite *conf_suite(void);
Suite *auth_suite(void);
Suite *store_suite(void);
Suite *registry_suite(void);
Suite *snapshot_suite(void);
Suite *metrics_suite(void);
Suite *policy_suite(void);
Suite *health_suite(void);
Suite *events_suite(void);
Suite *contract_suite(void);

/* a new empty directory under the run's root; out holds PATH_MAX bytes */
void ck_tmpdir(char *out, size_t size);
/* remove a file tree; missing paths are fine */
void ck_rmrf(const char *path);
/* write text to dir/name and put the path in out */
void ck_write_file(const char *dir, const char *name, const char *text,
    char *out, size_t size);


/* the store backend as a parameter (check_backend.c) */

extern const char  *ck_backend;         /* "sqlite" or "etcd" */

/* fixtures that choose it: every test case sets its own (without fork,
 * the last one set stays) */
void ck_use_sqlite(void);
void ck_use_etcd(void);

/* the tests add() adds, once per backend: test cases NAME-sqlite and
 * NAME-etcd, each with setup and teardown around every test */
void ck_add_tcases(Suite *s, const char *name, SFun setup, SFun teardown,
    void (*add)(TCase *tc));
/* the current backend's store for dir (etcd: a prefix named after dir) */
void ck_store_conf(rd_store_conf_t *sc, const char *dir);
rd_store_t *ck_store_open(const char *dir);
/* the runner's etcd: started under root before the suites run */
int ck_etcd_start(const char *root);
void ck_etcd_stop(void);
const char *ck_etcd_endpoints(void);


/* registry helpers (check_registry.c), shared with the snapshot suite */

typedef struct {
    pthread_mutex_t  lock;
    pthread_cond_t   cond;
    int              done;
} ck_waiter_t;

void ck_waiter_init(ck_waiter_t *w);
void ck_waiter_free(ck_waiter_t *w);
/* queue op with a done callback that counts on w */
void ck_submit(rd_registry_t *reg, ck_waiter_t *w, rd_op_t *op);
/* wait (at most 10 s, else fail) until n ops queued on w are done */
void ck_wait(ck_waiter_t *w, int n);

/* open store and registry on dir (writer not started) */
rd_registry_t *ck_reg_open(const char *dir, rd_store_t **store);
void ck_reg_close(rd_registry_t *reg, rd_store_t *store);
/* a PUT op holding the instance described by the JSON body */
rd_op_t *ck_op_put(const char *service, const char *id, const char *body);
/* submit one op, wait for it, return its status; the op is freed */
int ck_do(rd_registry_t *reg, rd_op_t *op, uint64_t *index);

#endif
