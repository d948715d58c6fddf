/*
 * rd_api_objects: policies as kubectl applies them (see rd_policy_obj.c).
 *
 *   POST   /v1/objects                    apply a YAML stream: each
 *                                         document created or replaced
 *                                         by kind, namespace and name
 *   POST   /v1/objects/delete             delete the objects a YAML
 *                                         stream names
 *   GET    /v1/objects[?kind=K]           every document of every policy
 *   GET    /v1/objects/KIND/NS/NAME       one document's YAML (or JSON)
 *   DELETE /v1/objects/KIND/NS/NAME
 *
 * An apply or a deletion is one group op: all of it or none.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "rd_api_int.h"


static const char  *rd_obj_results[] = {
    "created", "configured", "unchanged", "deleted", "not found"
};


/*
 * The group of an apply (del 0) or a deletion (del 1) from the request's
 * body; NULL when the body is refused, answered then.
 */
static rd_op_t *
rd_api_objects_group(rd_req_t *rq, int del, enum MHD_Result *rc)
{
    char               name[RD_NAME_MAX + 1];
    size_t             i, n, max, nparts;
    rd_op_t           *op, *m, **last;
    const char        *yaml;
    rd_policy_t       *p;
    rd_policy_obj_t    o;
    rd_policy_err_t    e;
    rd_policy_part_t  *parts;

    yaml = rq->body.data ? rq->body.data : "";

    if (rd_policy_split(yaml, rq->body.len, &parts, &nparts, &e) != 0) {
        *rc = rd_api_policy_error(rq, &e);
        return NULL;
    }

    op = rd_op_create(RD_OP_POLICY_GROUP, "", "");
    last = &op->members;

    for (i = 0; i < nparts; i++) {
        if (parts[i].empty) {
            continue;
        }

        if (del) {
            if (rd_policy_identity(yaml, &parts[i], &o, &e) != 0) {
                goto refused;
            }

            if (rd_policy_obj_name(o.kind, o.ns, o.name, name, e.msg) != 0) {
                snprintf(e.field, sizeof(e.field), "metadata");
                goto refused;
            }

            p = NULL;

        } else {
            p = rd_policy_parse_object(yaml, &parts[i], &e);
            if (p == NULL) {
                goto refused;
            }

            snprintf(name, sizeof(name), "%s", p->name);
        }

        /* one store key per object and commit */
        for (m = op->members; m; m = m->next) {
            if (strcmp(m->id, name) == 0) {
                rd_policy_obj_from_name(name, &o);
                rd_policy_free(p);
                rd_err_init(&e);
                snprintf(e.field, sizeof(e.field), "metadata.name");
                snprintf(e.msg, sizeof(e.msg), "duplicate %s %s/%s (also "
                         "document %d)", rd_policy_kind_name(o.kind), o.ns,
                         o.name, m->part.document);
                e.document = parts[i].document;
                goto refused;
            }
        }

        m = rd_op_create(del ? RD_OP_POLICY_DEL : RD_OP_POLICY_PUT, "", name);
        m->policy = p;
        m->part = parts[i];
        *last = m;
        last = &m->next;
    }

    free(parts);

    /* one commit of the store holds the whole group */
    max = rq->api->reg->store->batch_max;
    for (n = 0, m = op->members; m; m = m->next) {
        n++;
    }

    if (max && n > max) {
        rd_op_free(op);
        rd_err_init(&e);
        snprintf(e.msg, sizeof(e.msg), "%zu objects in one body: this "
                 "registry's store takes at most %zu in one transaction "
                 "(etcd_max_txn_ops - 2); apply them in parts", n, max);
        *rc = rd_api_policy_error(rq, &e);
        return NULL;
    }

    if (op->members == NULL) {
        rd_op_free(op);
        rd_err_init(&e);
        snprintf(e.msg, sizeof(e.msg), "the body holds no document: "
                 "expected DestinationRule, VirtualService or Gateway "
                 "documents");
        *rc = rd_api_policy_error(rq, &e);
        return NULL;
    }

    return op;

refused:

    free(parts);
    rd_op_free(op);
    *rc = rd_api_policy_error(rq, &e);

    return NULL;
}


enum MHD_Result
rd_api_objects_write(rd_req_t *rq)
{
    rd_op_t          *op;
    enum MHD_Result   rc;

    if (rq->method == RD_M_DELETE) {
        op = rd_op_create(RD_OP_POLICY_DEL, "", rq->id);
        return rd_api_submit(rq, op);
    }

    op = rd_api_objects_group(rq, rq->objects_delete, &rc);
    if (op == NULL) {
        return rc;
    }

    return rd_api_submit(rq, op);
}


static void
rd_api_object_json(mesh_buf_t *b, const rd_policy_obj_t *o,
    const char *policy)
{
    mesh_buf_adds(b, "{\"kind\":");
    mesh_buf_add_json_str(b, rd_policy_kind_name(o->kind));
    mesh_buf_adds(b, ",\"namespace\":");
    mesh_buf_add_json_str(b, o->ns);
    mesh_buf_adds(b, ",\"name\":");
    mesh_buf_add_json_str(b, o->name);
    mesh_buf_adds(b, ",\"policy\":");
    mesh_buf_add_json_str(b, policy);
}


/* the answer to a group: each object's result, in the request's order */
enum MHD_Result
rd_api_objects_answer(rd_req_t *rq, rd_op_t *op)
{
    int               r, doc;
    rd_op_t          *m, *best;
    mesh_buf_t        b;
    rd_policy_obj_t   o;

    if (op->status == 400) {
        return rd_api_policy_error(rq, &op->perr);
    }

    mesh_buf_init(&b, 256);
    mesh_buf_adds(&b, "{\"index\":");
    mesh_buf_add_u64(&b, op->index);
    mesh_buf_adds(&b, ",\"objects\":[");

    /* the members in decision order: told by document number */
    for (doc = -1; ; doc = best->part.document) {
        best = NULL;

        for (m = op->members; m; m = m->next) {
            if (m->part.document > doc
                && (best == NULL || m->part.document < best->part.document))
            {
                best = m;
            }
        }

        if (best == NULL) {
            break;
        }

        m = best;

        if (m->type == RD_OP_POLICY_DEL) {
            r = (m->status == 404) ? 4 : 3;

        } else {
            r = m->unchanged ? 2 : (m->status == 201) ? 0 : 1;
        }

        rd_policy_obj_from_name(m->id, &o);

        if (doc >= 0) {
            mesh_buf_addc(&b, ',');
        }

        rd_api_object_json(&b, &o, m->id);
        mesh_buf_adds(&b, ",\"result\":");
        mesh_buf_add_json_str(&b, rd_obj_results[r]);
        if (m->index) {
            mesh_buf_adds(&b, ",\"index\":");
            mesh_buf_add_u64(&b, m->index);
        }
        mesh_buf_addc(&b, '}');
    }

    mesh_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, op->index);
}


static int
rd_api_json_has(json_t *arr, json_t *v)
{
    size_t  i;

    for (i = 0; i < json_array_size(arr); i++) {
        if (json_equal(json_array_get(arr, i), v)) {
            return 1;
        }
    }

    return 0;
}


/* the hosts of a normalized document: "host" or "hosts", or a Gateway's
 * servers' hosts, each once */
static void
rd_api_object_hosts(mesh_buf_t *b, json_t *d)
{
    char    *s;
    size_t   i, j;
    json_t  *v, *all, *h;

    if ((v = json_object_get(d, "host")) != NULL) {
        mesh_buf_adds(b, ",\"hosts\":[");
        mesh_buf_add_json_str(b, json_string_value(v));
        mesh_buf_addc(b, ']');

    } else if ((v = json_object_get(d, "hosts")) != NULL) {
        s = json_dumps(v, JSON_COMPACT);
        mesh_buf_adds(b, ",\"hosts\":");
        mesh_buf_adds(b, s ? s : "[]");
        free(s);

    } else if ((v = json_object_get(d, "servers")) != NULL) {
        all = json_array();

        for (i = 0; i < json_array_size(v); i++) {
            h = json_object_get(json_array_get(v, i), "hosts");

            for (j = 0; j < json_array_size(h); j++) {
                if (!rd_api_json_has(all, json_array_get(h, j))) {
                    json_array_append(all, json_array_get(h, j));
                }
            }
        }

        s = json_dumps(all, JSON_COMPACT);
        mesh_buf_adds(b, ",\"hosts\":");
        mesh_buf_adds(b, s ? s : "[]");
        free(s);
        json_decref(all);
    }
}


enum MHD_Result
rd_api_objects(rd_req_t *rq)
{
    int              kind = -1;
    size_t           i, j, n = 0;
    mesh_buf_t       b;
    uint64_t         index;
    const char      *k;
    rd_policy_t     *p;
    rd_registry_t   *reg = rq->api->reg;
    rd_policy_obj_t *o;

    k = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "kind");
    if (k) {
        kind = rd_policy_kind_parse(k);
        if (kind < 0) {
            return rd_api_error(rq, 400, "kind: not DestinationRule, "
                                "VirtualService or Gateway", "kind");
        }
    }

    mesh_buf_init(&b, 1024);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    mesh_buf_adds(&b, "{\"index\":");
    mesh_buf_add_u64(&b, index);
    mesh_buf_adds(&b, ",\"objects\":[");

    for (i = 0; i < reg->npolicies; i++) {
        p = reg->policies[i];

        for (j = 0; j < p->nobjs; j++) {
            o = &p->objs[j];
            if (kind >= 0 && o->kind != kind) {
                continue;
            }

            if (n++) {
                mesh_buf_addc(&b, ',');
            }

            rd_api_object_json(&b, o, p->name);
            rd_api_object_hosts(&b, json_array_get(p->docs, j));
            mesh_buf_printf(&b, ",\"create_index\":%llu,"
                            "\"modify_index\":%llu}",
                            (unsigned long long) p->create_index,
                            (unsigned long long) p->modify_index);
        }
    }

    pthread_rwlock_unlock(&reg->lock);

    mesh_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}


/*
 * One object: the policy stored under its name, or a document of a
 * policy of several (applied with PUT /v1/policies/NAME) that has its
 * identity.
 */
enum MHD_Result
rd_api_get_object(rd_req_t *rq)
{
    int                json, found = 0;
    size_t             i, j, nparts, start, end;
    mesh_buf_t         b;
    uint64_t           index;
    const char        *accept;
    rd_policy_t       *p;
    rd_policy_obj_t    want, *o;
    rd_policy_err_t    e;
    rd_registry_t     *reg = rq->api->reg;
    rd_policy_part_t  *parts;

    accept = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_ACCEPT);
    json = (accept && strstr(accept, "application/json") != NULL);

    rd_policy_obj_from_name(rq->id, &want);
    mesh_buf_init(&b, 1024);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;

    for (i = 0; i < reg->npolicies && !found; i++) {
        p = reg->policies[i];

        for (j = 0; j < p->nobjs; j++) {
            o = &p->objs[j];
            if (o->kind != want.kind || strcmp(o->ns, want.ns) != 0
                || strcmp(o->name, want.name) != 0)
            {
                continue;
            }

            found = 1;

            if (json) {
                rd_api_object_json(&b, o, p->name);
                rd_api_object_hosts(&b, json_array_get(p->docs, j));
                mesh_buf_printf(&b, ",\"create_index\":%llu,"
                                "\"modify_index\":%llu,\"index\":%llu,"
                                "\"normalized\":",
                                (unsigned long long) p->create_index,
                                (unsigned long long) p->modify_index,
                                (unsigned long long) index);
                {
                    char *s = json_dumps(json_array_get(p->docs, j),
                                         JSON_COMPACT);
                    mesh_buf_adds(&b, s ? s : "null");
                    free(s);
                }
                mesh_buf_adds(&b, ",\"yaml\":");
            }

            /* the document's text: the policy's, or its part of it */
            start = 0;
            end = p->yaml_len;

            if (p->nobjs > 1
                && rd_policy_split(p->yaml, p->yaml_len, &parts, &nparts, &e)
                   == 0)
            {
                if ((size_t) o->document < nparts) {
                    start = parts[o->document].start;
                    end = parts[o->document].end;
                }
                free(parts);
            }

            if (json) {
                char *y = strndup(p->yaml + start, end - start);

                mesh_buf_add_json_str(&b, y);
                free(y);
                mesh_buf_adds(&b, "}\n");

            } else {
                mesh_buf_add(&b, p->yaml + start, end - start);
            }

            break;
        }
    }

    pthread_rwlock_unlock(&reg->lock);

    if (!found) {
        mesh_buf_free(&b);
        return rd_api_error(rq, 404, "unknown object", "name");
    }

    return rd_api_send_buf(rq, 200, &b, index,
                           json ? "application/json" : "application/yaml");
}
