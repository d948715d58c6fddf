/*
 * rd_api_write: the writes (register, deregister, heartbeat, queued to the
 * registry's writer) and the policies (apply, list, get, delete).
 */

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rd_api_int.h"


/* writes */

static void
rd_api_op_done(rd_op_t *op)
{
    rd_req_t  *rq = op->data;

    MHD_resume_connection(rq->conn);
}


enum MHD_Result
rd_api_submit(rd_req_t *rq, rd_op_t *op)
{
    rd_api_t  *api = rq->api;

    op->done = rd_api_op_done;
    op->data = rq;
    rq->op = op;
    rq->state = RD_REQ_WAIT_OP;

    pthread_mutex_lock(&api->lock);

    if (api->stopping) {
        pthread_mutex_unlock(&api->lock);
        rq->op = NULL;
        rd_op_free(op);
        return rd_api_error(rq, 503, "registryd is shutting down", NULL);
    }

    MHD_suspend_connection(rq->conn);
    rd_registry_submit(api->reg, op);

    pthread_mutex_unlock(&api->lock);

    return MHD_YES;
}


/*
 * Health checks are not an open proxy: with probe_networks set, a check
 * may only name an instance inside them (whoever registers cannot make
 * registryd knock on any address of its network).
 */
static int
rd_api_probe_allowed(rd_api_t *api, const char *address)
{
    return api->nprobe == 0
           || mesh_cidr_match_any(api->probe, api->nprobe, NULL, address);
}


enum MHD_Result
rd_api_put_instance(rd_req_t *rq)
{
    char            err[RD_ERR_LEN];
    json_t         *obj;
    rd_op_t        *op;
    const char     *field;
    json_error_t    jerr;
    rd_instance_t  *in;

    obj = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len,
                     JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        snprintf(err, sizeof(err), "malformed JSON at line %d column %d: %s",
                 jerr.line, jerr.column, jerr.text);
        return rd_api_error(rq, 400, err, NULL);
    }

    in = rd_instance_create();
    op = rd_op_create(RD_OP_PUT, rq->svc, rq->id);

    if (rd_instance_from_json(obj, 0, in, err, &field) != 0) {
        enum MHD_Result rc = rd_api_error(rq, 400, err, field);

        json_decref(obj);
        rd_instance_free(in);
        rd_op_free(op);
        return rc;
    }

    json_decref(obj);

    if (in->check && !rd_api_probe_allowed(rq->api, in->address)) {
        snprintf(err, sizeof(err), "a health check would probe %s, outside "
                 "probe_networks (%s)", in->address,
                 rq->api->conf->probe_networks);
        rd_instance_free(in);
        rd_op_free(op);
        return rd_api_error(rq, 400, err, "check");
    }

    op->inst = in;

    return rd_api_submit(rq, op);
}


enum MHD_Result
rd_api_heartbeat(rd_req_t *rq)
{
    int        rc;
    rd_op_t   *op;
    mesh_buf_t  b;
    uint64_t   index;

    rc = rd_registry_heartbeat(rq->api->reg, rq->svc, rq->id, &index);

    if (rc < 0) {
        return rd_api_error(rq, 404, "unknown instance", "id");
    }

    if (rc == 0) {
        mesh_buf_init(&b, 64);
        mesh_buf_adds(&b, "{\"index\":");
        mesh_buf_add_u64(&b, index);
        mesh_buf_adds(&b, ",\"health\":\"passing\"}\n");
        return rd_api_json(rq, 200, &b, index);
    }

    /* critical: back to passing is a change, through the store */

    op = rd_op_create(RD_OP_HEALTH, rq->svc, rq->id);
    op->health = RD_HEALTH_PASSING;
    op->reason = "heartbeat";

    return rd_api_submit(rq, op);
}


/* policies */

enum MHD_Result
rd_api_policy_error(rd_req_t *rq, const rd_policy_err_t *e)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 512);
    rd_policy_err_to_json(&b, e);
    mesh_buf_adds(&b, "\n");

    rd_debug("400 %s", e->msg);

    return rd_api_json(rq, 400, &b, rd_registry_index(rq->api->reg));
}


enum MHD_Result
rd_api_put_policy(rd_req_t *rq)
{
    rd_op_t          *op;
    rd_policy_t      *p;
    rd_policy_err_t   e;

    p = rd_policy_parse(rq->id, rq->body.data ? rq->body.data : "",
                        rq->body.len, &e);
    if (p == NULL) {
        return rd_api_policy_error(rq, &e);
    }

    op = rd_op_create(RD_OP_POLICY_PUT, "", rq->id);
    op->policy = p;

    return rd_api_submit(rq, op);
}


static void
rd_api_policy_summary(mesh_buf_t *b, const rd_policy_t *p)
{
    size_t   i;
    json_t  *d, *v;

    mesh_buf_adds(b, "{\"name\":");
    mesh_buf_add_json_str(b, p->name);
    mesh_buf_adds(b, ",\"documents\":[");

    for (i = 0; i < json_array_size(p->docs); i++) {
        d = json_array_get(p->docs, i);

        mesh_buf_adds(b, i ? ",{\"kind\":" : "{\"kind\":");
        mesh_buf_add_json_str(b, json_string_value(json_object_get(d, "kind")));
        mesh_buf_adds(b, ",\"name\":");
        mesh_buf_add_json_str(b, json_string_value(json_object_get(d, "name")));

        if ((v = json_object_get(d, "host")) != NULL) {
            mesh_buf_adds(b, ",\"host\":");
            mesh_buf_add_json_str(b, json_string_value(v));
        }

        if ((v = json_object_get(d, "hosts")) != NULL) {
            char *s = json_dumps(v, JSON_COMPACT);

            mesh_buf_adds(b, ",\"hosts\":");
            mesh_buf_adds(b, s ? s : "[]");
            free(s);
        }

        mesh_buf_addc(b, '}');
    }

    mesh_buf_printf(b, "],\"create_index\":%llu,\"modify_index\":%llu}",
                  (unsigned long long) p->create_index,
                  (unsigned long long) p->modify_index);
}


enum MHD_Result
rd_api_policies(rd_req_t *rq)
{
    size_t          i;
    mesh_buf_t      b;
    uint64_t        index;
    rd_registry_t  *reg = rq->api->reg;

    mesh_buf_init(&b, 256);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    mesh_buf_adds(&b, "{\"index\":");
    mesh_buf_add_u64(&b, index);
    mesh_buf_adds(&b, ",\"policies\":[");

    for (i = 0; i < reg->npolicies; i++) {
        if (i) {
            mesh_buf_addc(&b, ',');
        }
        rd_api_policy_summary(&b, reg->policies[i]);
    }

    pthread_rwlock_unlock(&reg->lock);

    mesh_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}


enum MHD_Result
rd_api_get_policy(rd_req_t *rq)
{
    int             json;
    mesh_buf_t      b;
    uint64_t        index;
    const char     *accept;
    rd_policy_t    *p;
    rd_registry_t  *reg = rq->api->reg;

    accept = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_ACCEPT);
    json = (accept && strstr(accept, "application/json") != NULL);

    mesh_buf_init(&b, 1024);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    p = rd_registry_find_policy(reg, rq->id);

    if (p && json) {
        rd_api_policy_summary(&b, p);
        b.len--;
        mesh_buf_adds(&b, ",\"index\":");
        mesh_buf_add_u64(&b, index);
        mesh_buf_adds(&b, ",\"yaml\":");
        mesh_buf_add_json_str(&b, p->yaml);
        mesh_buf_adds(&b, ",\"normalized\":[");
        mesh_buf_add(&b, p->snap, p->snap_len);
        mesh_buf_adds(&b, "]}\n");

    } else if (p) {
        mesh_buf_add(&b, p->yaml, p->yaml_len);
    }

    pthread_rwlock_unlock(&reg->lock);

    if (p == NULL) {
        mesh_buf_free(&b);
        return rd_api_error(rq, 404, "unknown policy", "name");
    }

    return rd_api_send_buf(rq, 200, &b, index,
                           json ? "application/json" : "application/yaml");
}
