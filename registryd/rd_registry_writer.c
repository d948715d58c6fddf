/*
 * rd_registry_writer: ops (a write to be made), the writer thread that
 * takes them in batches, commits each batch to the store in one
 * transaction and only then applies it and answers; the events of what it
 * committed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "rd_check.h"
#include "rd_metrics.h"
#include "rd_registry_int.h"


/* ops */

rd_op_t *
rd_op_create(int type, const char *service, const char *id)
{
    rd_op_t  *op;

    op = mesh_xcalloc(1, sizeof(rd_op_t));

    op->type = type;
    snprintf(op->service, sizeof(op->service), "%s", service);
    snprintf(op->id, sizeof(op->id), "%s", id);

    return op;
}


void
rd_op_free(rd_op_t *op)
{
    if (op == NULL) {
        return;
    }

    size_t    i;
    rd_op_t  *m, *next;

    for (m = op->members; m; m = next) {
        next = m->next;
        rd_op_free(m);
    }

    rd_instance_free(op->inst);
    rd_policy_free(op->policy);
    mesh_buf_free(&op->body);

    for (i = 0; i < op->nrops; i++) {
        free((char *) op->rops[i].key);
        free((char *) op->rops[i].value);
    }

    free(op->rops);
    free(op->note);
    free(op);
}


void
rd_registry_submit(rd_registry_t *reg, rd_op_t *op)
{
    op->next = NULL;

    pthread_mutex_lock(&reg->qlock);

    if (reg->qtail) {
        reg->qtail->next = op;
    } else {
        reg->qhead = op;
    }

    reg->qtail = op;
    reg->qlen++;

    pthread_cond_signal(&reg->qcond);
    pthread_mutex_unlock(&reg->qlock);
}


/* the store keys an op may write */
static size_t
rd_op_keys(rd_op_t *op)
{
    size_t    n;
    rd_op_t  *m;

    if (op->members == NULL) {
        return 1;
    }

    for (n = 0, m = op->members; m; m = m->next) {
        n++;
    }

    return n;
}


void *
rd_registry_writer(void *arg)
{
    size_t          n, max, keys;
    rd_op_t        *batch, *last;
    rd_registry_t  *reg = arg;

    max = RD_BATCH_MAX;

    if (reg->store->batch_max && reg->store->batch_max < max) {
        max = reg->store->batch_max;
    }

    for ( ;; ) {
        pthread_mutex_lock(&reg->qlock);

        while (reg->qhead == NULL && reg->rhead == NULL && !reg->stopping) {
            pthread_cond_wait(&reg->qcond, &reg->qlock);
        }

        if (reg->rhead) {
            /* other replicas' commits first, in their order */
            pthread_mutex_unlock(&reg->qlock);
            rd_registry_apply_remotes(reg);
            continue;
        }

        if (reg->qhead == NULL) {
            pthread_mutex_unlock(&reg->qlock);
            break;
        }

        /* take up to RD_BATCH_MAX store keys, or what the store takes
         * in one commit: an op writes one key, a group one per member */
        batch = reg->qhead;
        last = batch;
        keys = rd_op_keys(batch);
        for (n = 1; last->next && keys + rd_op_keys(last->next) <= max; n++)
        {
            last = last->next;
            keys += rd_op_keys(last);
        }

        reg->qhead = last->next;
        if (reg->qhead == NULL) {
            reg->qtail = NULL;
        }
        reg->qlen -= n;
        last->next = NULL;

        pthread_mutex_unlock(&reg->qlock);

        rd_registry_commit_batch(reg, batch);
    }

    return NULL;
}


/* the batch's view of keys it already touched */

static rd_overlay_slot_t *
rd_overlay_slot(rd_overlay_t *ov, const char *service, const char *id)
{
    size_t              i;
    rd_overlay_slot_t  *s;

    i = rd_registry_hash(service, id) & ov->mask;

    for ( ;; ) {
        s = &ov->slots[i];

        if (!s->used
            || (strcmp(s->id, id) == 0 && strcmp(s->service, service) == 0))
        {
            return s;
        }

        i = (i + 1) & ov->mask;
    }
}


/* pv: a copy of the table's pointers, made on the first policy op */
static void
rd_policy_views_init(rd_registry_t *reg, rd_policy_views_t *pv)
{
    if (pv->init) {
        return;
    }

    pv->init = 1;
    pv->n = reg->npolicies;
    pv->cap = reg->npolicies + 16;
    pv->v = mesh_xmalloc(pv->cap * sizeof(rd_policy_t *));
    if (reg->npolicies) {
        memcpy(pv->v, reg->policies, reg->npolicies * sizeof(rd_policy_t *));
    }
}


/*
 * A policy op against the policies as the batch has changed them (pv: a
 * copy of the table's pointers, made on the first policy op; the
 * policies of earlier ops stay owned by their ops). 0: a change to
 * commit; -1: decided without one (400, 404).
 */
static int
rd_registry_decide_policy(rd_registry_t *reg, rd_policy_views_t *pv,
    rd_op_t *op, uint64_t index)
{
    int            found;
    size_t         i;
    rd_policy_t   *cur;

    rd_policy_views_init(reg, pv);

    op->err[0] = '\0';
    i = rd_policy_pos(pv->v, pv->n, op->id, &found);
    cur = found ? pv->v[i] : NULL;

    if (op->type == RD_OP_POLICY_DEL) {
        if (cur == NULL) {
            op->status = 404;
            return -1;
        }

        op->status = 200;
        rd_policy_array_set(&pv->v, &pv->n, &pv->cap, op->id, NULL);
        return 0;
    }

    if (rd_policy_check(op->policy, pv->v, pv->n, &op->perr) != 0) {
        op->status = 400;
        snprintf(op->err, sizeof(op->err), "%s", op->perr.msg);
        return -1;
    }

    op->status = cur ? 200 : 201;
    op->ndocs = json_array_size(op->policy->docs);
    op->policy->create_index = cur ? cur->create_index : index;
    op->policy->modify_index = index;
    rd_policy_array_set(&pv->v, &pv->n, &pv->cap, op->id, op->policy);

    return 0;
}


/*
 * A group: its members decided one after another against the table as
 * the earlier ones left it, deletions and DestinationRules before
 * VirtualServices (whose routes may name a subset a rule of the same
 * group defines); each change gets its own index from index + 1 on. A
 * refused member refuses the group and leaves the table as it was. 0:
 * changes to commit (op->index the last one's); -1: none (400, or
 * nothing to change).
 */
static void rd_registry_op_event(rd_op_t *op, int prev, int64_t time);

static int
rd_registry_decide_group(rd_registry_t *reg, rd_policy_views_t *pv,
    rd_op_t *op, uint64_t index, int64_t wall)
{
    int            found, rc = 0;
    size_t         i, nsaved;
    rd_op_t       *m, *next, *first, **last, *vs, **vs_last;
    uint64_t       idx = index;
    rd_policy_t  **saved, *cur;

    /* the order of decision, which is the order of the indexes: the
     * VirtualServices moved behind the rest (the answer tells them in
     * the request's order again) */
    first = NULL;
    last = &first;
    vs = NULL;
    vs_last = &vs;

    for (m = op->members; m; m = next) {
        next = m->next;
        m->next = NULL;

        if (m->type == RD_OP_POLICY_PUT
            && m->policy->objs[0].kind == RD_POLICY_VS)
        {
            *vs_last = m;
            vs_last = &m->next;

        } else {
            *last = m;
            last = &m->next;
        }
    }

    *last = vs;
    op->members = first;

    rd_policy_views_init(reg, pv);

    nsaved = pv->n;
    saved = mesh_xmalloc((nsaved + 1) * sizeof(rd_policy_t *));
    if (nsaved) {
        memcpy(saved, pv->v, nsaved * sizeof(rd_policy_t *));
    }

    for (m = op->members; m; m = m->next) {
        m->unchanged = 0;

        if (m->type == RD_OP_POLICY_PUT) {
            i = rd_policy_pos(pv->v, pv->n, m->id, &found);
            cur = found ? pv->v[i] : NULL;

            if (cur && cur->yaml_len == m->policy->yaml_len
                && memcmp(cur->yaml, m->policy->yaml, cur->yaml_len) == 0)
            {
                m->status = 200;
                m->unchanged = 1;
                continue;
            }
        }

        if (rd_registry_decide_policy(reg, pv, m, idx + 1) != 0) {
            if (m->status == 404) {
                continue;       /* a deletion of what is not there */
            }

            op->perr = m->perr;
            rd_policy_err_shift(&op->perr, &m->part);
            op->status = 400;
            snprintf(op->err, sizeof(op->err), "%s", op->perr.msg);
            rc = -1;
            break;
        }

        idx++;
        m->index = idx;
        rd_registry_op_event(m, 0, wall);
    }

    if (rc != 0) {
        /* none of it: the table as before the group, no index taken */
        if (nsaved) {
            memcpy(pv->v, saved, nsaved * sizeof(rd_policy_t *));
        }
        pv->n = nsaved;

        for (m = op->members; m; m = m->next) {
            m->index = 0;
            m->has_ev = 0;
        }

        free(saved);
        return -1;
    }

    free(saved);
    op->status = 200;

    if (idx == index) {
        return -1;              /* nothing changes */
    }

    op->index = idx;

    return 0;
}


/*
 * The event of an op decided with a change, made when it is decided
 * (prev: the instance's health before it), appended when it is applied
 * and noted in the commit for other replicas.
 */
static void
rd_registry_op_event(rd_op_t *op, int prev, int64_t time)
{
    rd_event_t  *e = &op->ev;

    op->has_ev = 1;
    e->index = op->index;
    e->time = time;
    e->reason = NULL;
    snprintf(e->service, sizeof(e->service), "%s", op->service);
    snprintf(e->id, sizeof(e->id), "%s", op->id);

    switch (op->type) {

    case RD_OP_PUT:
        e->type = (op->status == 201) ? RD_EV_REGISTERED : RD_EV_UPDATED;
        break;

    case RD_OP_DEL:
        e->type = RD_EV_DEREGISTERED;
        e->reason = op->reason ? op->reason
                               : op->internal ? "deregister_after" : "api";
        break;

    case RD_OP_HEALTH:
        /* the TTL or the check changed its mind, the health did not */
        if (prev == op->health) {
            op->has_ev = 0;
            return;
        }

        e->type = (op->health == RD_HEALTH_PASSING) ? RD_EV_PASSING
                                                    : RD_EV_CRITICAL;
        e->reason = op->reason ? op->reason
                               : op->internal ? "ttl" : "heartbeat";
        break;

    case RD_OP_POLICY_PUT:
        e->type = RD_EV_POLICY_APPLIED;
        e->service[0] = '\0';
        break;

    default: /* RD_OP_POLICY_DEL */
        e->type = RD_EV_POLICY_DELETED;
        e->service[0] = '\0';
        break;
    }
}


/* an op decided again, after its batch was refused as behind */
static void
rd_op_reset(rd_op_t *op)
{
    op->status = 0;
    op->index = 0;
    op->err[0] = '\0';
    op->has_ev = 0;

    for (rd_op_t *m = op->members; m; m = m->next) {
        rd_op_reset(m);
    }

    if (op->type == RD_OP_HEALTH || op->type == RD_OP_DEL) {
        /* the copy the decision made */
        rd_instance_free(op->inst);
        op->inst = NULL;
    }
}


/* the note of a commit for the other replicas: its events */
static char *
rd_registry_note(rd_op_t *batch)
{
    int          first;
    rd_op_t     *op, *m;
    mesh_buf_t   b;

    mesh_buf_init(&b, 1024);
    mesh_buf_addc(&b, '[');
    first = 1;

    for (op = batch; op; op = op->next) {
        for (m = op->members ? op->members : op; m; m = m->next) {
            if (m->index && m->has_ev) {
                if (!first) {
                    mesh_buf_addc(&b, ',');
                }

                rd_event_to_note(&b, &m->ev);
                first = 0;
            }

            if (m == op) {
                break;
            }
        }
    }

    mesh_buf_addc(&b, ']');

    return mesh_buf_cstr(&b);
}




void
rd_registry_commit_batch(rd_registry_t *reg, rd_op_t *batch)
{
    int                 ok, rc = 0, tries;
    char                err[RD_ERR_LEN];
    char               *keys, *note;
    size_t              n, nops, i, size;
    int64_t             now, t0, wall, first;
    uint64_t            index;
    rd_op_t            *op, *next, *m;
    mesh_buf_t         *vals;
    rd_overlay_t        ov;
    rd_store_op_t      *sops;
    rd_instance_t      *cur, *in;
    rd_overlay_slot_t  *slot;
    rd_policy_views_t   pv = { NULL, 0, 0, 0 };

    n = 0;
    for (op = batch; op; op = op->next) {
        n++;
        for (m = op->members; m; m = m->next) {
            n++;                /* a store key each */
        }
    }

    for (size = 4; size < 2 * n; size *= 2) { /* void */ }

    ov.slots = mesh_xcalloc(size, sizeof(rd_overlay_slot_t));
    ov.mask = size - 1;
    sops = mesh_xcalloc(n, sizeof(rd_store_op_t));
    vals = mesh_xcalloc(n, sizeof(mesh_buf_t));
    keys = mesh_xmalloc(n * RD_KEY_MAX);
    tries = 0;
    first = rd_now_ms();

again:

    index = reg->index;
    nops = 0;
    now = rd_now_ms();
    wall = rd_wall_ms();

    /* decide each op against the table as the batch has changed it */

    for (op = batch; op; op = op->next) {

        if (tries) {
            rd_op_reset(op);
        }

        if (op->type == RD_OP_POLICY_GROUP) {
            if (rd_registry_decide_group(reg, &pv, op, index, wall) != 0) {
                continue;
            }

            for (m = op->members; m; m = m->next) {
                if (m->index == 0) {
                    continue;
                }

                if (m->policy) {
                    mesh_buf_init(&vals[nops],
                                  m->policy->yaml_len * 2 + 256);
                    rd_policy_to_stored(&vals[nops], m->policy);
                    sops[nops].value = vals[nops].data;
                    sops[nops].value_len = vals[nops].len;
                }

                snprintf(keys + nops * RD_KEY_MAX, RD_KEY_MAX,
                         "policies/%s", m->id);
                sops[nops].key = keys + nops * RD_KEY_MAX;
                sops[nops].del = (m->policy == NULL);
                nops++;
            }

            index = op->index;
            continue;
        }

        if (op->type == RD_OP_POLICY_PUT || op->type == RD_OP_POLICY_DEL) {
            if (rd_registry_decide_policy(reg, &pv, op, index + 1) != 0) {
                continue;
            }

            index++;
            op->index = index;
            rd_registry_op_event(op, 0, wall);

            if (op->policy) {
                mesh_buf_init(&vals[nops], op->policy->yaml_len * 2 + 256);
                rd_policy_to_stored(&vals[nops], op->policy);
                sops[nops].value = vals[nops].data;
                sops[nops].value_len = vals[nops].len;
            }

            snprintf(keys + nops * RD_KEY_MAX, RD_KEY_MAX, "policies/%s",
                     op->id);
            sops[nops].key = keys + nops * RD_KEY_MAX;
            sops[nops].del = (op->policy == NULL);
            nops++;
            continue;
        }

        slot = rd_overlay_slot(&ov, op->service, op->id);
        cur = slot->used ? slot->inst
                         : rd_registry_find(reg, op->service, op->id);
        in = NULL;

        op->status = 200;
        op->err[0] = '\0';

        switch (op->type) {

        case RD_OP_PUT:
            in = op->inst;
            op->inst = NULL;
            snprintf(in->service, sizeof(in->service), "%s", op->service);
            snprintf(in->id, sizeof(in->id), "%s", op->id);
            in->health = RD_HEALTH_PASSING;
            in->create_index = cur ? cur->create_index : index + 1;
            in->last_seen = now;
            in->put_index = index + 1;
            op->status = cur ? 200 : 201;
            break;

        case RD_OP_DEL:
            if (cur == NULL) {
                op->status = 404;
                continue;
            }

            if (op->internal && cur->health != RD_HEALTH_CRITICAL) {
                __atomic_store_n(&cur->pending, 0, __ATOMIC_RELAXED);
                continue;       /* it came back before removal */
            }
            break;

        default: /* RD_OP_HEALTH */
            if (cur == NULL) {
                op->status = 404;
                continue;
            }

            if (op->check) {
                /* the prober's verdict about this very registration */
                if (cur->put_index != op->put_index
                    || cur->check_critical
                       == (op->health == RD_HEALTH_CRITICAL))
                {
                    op->health = cur->health;
                    continue;
                }

            } else if (cur->ttl_critical == (op->health == RD_HEALTH_CRITICAL)
                       || (op->health == RD_HEALTH_CRITICAL
                           && __atomic_load_n(&cur->last_seen,
                                              __ATOMIC_RELAXED)
                              != op->seen))
            {
                /* nothing to do, or a heartbeat came in */
                __atomic_store_n(&cur->pending, 0, __ATOMIC_RELAXED);
                op->health = cur->health;
                continue;
            }

            in = rd_instance_dup(cur);

            if (op->check) {
                in->check_critical = (op->health == RD_HEALTH_CRITICAL);

            } else {
                in->ttl_critical = (op->health == RD_HEALTH_CRITICAL);
                in->pending = 0;
                in->last_seen = now;
            }

            /* critical if either the TTL or the check says so */
            in->health = (in->ttl_critical || in->check_critical)
                         ? RD_HEALTH_CRITICAL : RD_HEALTH_PASSING;
            op->health = in->health;

            if (in->health == RD_HEALTH_CRITICAL
                && cur->health != RD_HEALTH_CRITICAL)
            {
                in->critical_since = now;
            }
            break;
        }

        index++;
        op->index = index;
        rd_registry_op_event(op, cur ? cur->health : -1, wall);

        if (in) {
            in->modify_index = index;
            mesh_buf_init(&vals[nops], 256);
            rd_instance_to_json(&vals[nops], in, RD_JSON_STORED);
            sops[nops].value = vals[nops].data;
            sops[nops].value_len = vals[nops].len;
        }

        rd_registry_key(keys + nops * RD_KEY_MAX, op->service, op->id);
        sops[nops].key = keys + nops * RD_KEY_MAX;
        sops[nops].del = (in == NULL);
        nops++;

        /* an earlier op's instance in this batch is replaced: keep it on
         * the op for the apply pass, which frees replaced instances */
        slot->used = 1;
        slot->service = op->service;
        slot->id = op->id;
        slot->inst = in;
        op->inst = in;
    }

    ok = 1;

    if (nops) {
        t0 = rd_now_ms();
        note = reg->store->notes ? rd_registry_note(batch) : NULL;
        rc = rd_store_commit(reg->store, sops, nops, index, note, err);
        free(note);
        ok = (rc == 0);

        if (rc == RD_STORE_CONFLICT
            && rd_now_ms() - first < RD_CONFLICT_TIMEOUT)
        {
            /* another replica committed first: apply what it did, then
             * decide this batch again on that state */
            rd_metrics_commit(rd_now_ms() - t0, nops, 0);

            for (i = 0; i < nops; i++) {
                mesh_buf_free(&vals[i]);
            }

            memset(ov.slots, 0, size * sizeof(rd_overlay_slot_t));
            free(pv.v);
            memset(&pv, 0, sizeof(pv));

            rd_debug("store: behind another replica (revision %lld), "
                     "deciding %zu ops again", (long long)
                     reg->store->behind, n);

            rd_registry_catch_up(reg, reg->store->behind,
                                 RD_CATCH_UP_TIMEOUT);
            tries++;
            goto again;
        }

        rd_metrics_commit(rd_now_ms() - t0, nops, ok);

        if (!ok) {
            rd_error("%s", err);

            pthread_mutex_lock(&reg->qlock);
            snprintf(reg->store_err, sizeof(reg->store_err), "%s", err);
            pthread_mutex_unlock(&reg->qlock);
        }

        reg->store_ok = ok;
    }

    if (ok && nops) {
        pthread_rwlock_wrlock(&reg->lock);

        for (op = batch; op; op = op->next) {
            if (op->index == 0) {
                continue;
            }

            if (op->has_ev && reg->events) {
                rd_events_append(reg->events, &op->ev);
            }

            for (m = op->members; m; m = m->next) {
                if (m->index == 0) {
                    continue;
                }

                if (m->has_ev && reg->events) {
                    rd_events_append(reg->events, &m->ev);
                }

                rd_registry_set_policy(reg, m->id, m->policy);
                m->policy = NULL;
            }

            if (op->type == RD_OP_POLICY_PUT) {
                rd_registry_set_policy(reg, op->id, op->policy);
                op->policy = NULL;

            } else if (op->type == RD_OP_POLICY_DEL) {
                rd_registry_set_policy(reg, op->id, NULL);

            } else if (op->type == RD_OP_PUT || op->type == RD_OP_HEALTH) {
                in = op->inst;
                op->inst = NULL;
                if (op->type == RD_OP_PUT) {
                    op->inst = rd_instance_dup(in);   /* for the answer */
                }
                rd_registry_set(reg, op->service, op->id, in);

            } else if (op->type != RD_OP_POLICY_GROUP) {
                rd_registry_set(reg, op->service, op->id, NULL);
            }
        }

        __atomic_store_n(&reg->index, index, __ATOMIC_RELEASE);

        /* without readers of the sorted view, removed instances pile up */
        if (reg->ndead > 4096) {
            pthread_mutex_lock(&reg->sort_lock);
            rd_registry_refresh_sorted(reg);
            pthread_mutex_unlock(&reg->sort_lock);
        }

        pthread_rwlock_unlock(&reg->lock);

    } else if (!ok) {
        for (op = batch; op; op = op->next) {
            if (op->internal) {
                /* let the next TTL scan try again */
                cur = rd_registry_find(reg, op->service, op->id);
                if (cur) {
                    __atomic_store_n(&cur->pending, 0, __ATOMIC_RELAXED);
                }
            }

            if (op->index) {
                /* a store that refused: 500; one that is out of reach,
                 * or silent, or ahead of this replica: 503, try again */
                op->status = (rc == -1) ? 500 : 503;
                op->index = 0;
                snprintf(op->err, sizeof(op->err), "%s", err);
            }
        }
    }

    for (i = 0; i < nops; i++) {
        mesh_buf_free(&vals[i]);
    }

    free(ov.slots);
    free(sops);
    free(vals);
    free(keys);
    free(pv.v);

    if (ok && nops && reg->on_change) {
        reg->on_change(reg->on_change_data, index);
    }

    for (op = batch; op; op = next) {
        next = op->next;

        if (op->index == 0 && op->status != 500 && op->status != 503) {
            op->index = ok ? index : reg->index;
        }

        if (op->type == RD_OP_POLICY_PUT && op->status < 300) {
            mesh_buf_init(&op->body, 256);
            mesh_buf_adds(&op->body, "{\"name\":");
            mesh_buf_add_json_str(&op->body, op->id);
            mesh_buf_printf(&op->body, ",\"documents\":%zu,\"index\":",
                          op->ndocs);
            mesh_buf_add_u64(&op->body, op->index);
            mesh_buf_addc(&op->body, '}');
        }

        if (op->type == RD_OP_PUT && op->status < 300 && op->inst) {
            mesh_buf_init(&op->body, 512);
            rd_instance_to_json(&op->body, op->inst, RD_JSON_FULL);
            op->body.len--;     /* reopen the object for the index */
            mesh_buf_adds(&op->body, ",\"index\":");
            mesh_buf_add_u64(&op->body, op->index);
            mesh_buf_addc(&op->body, '}');
        }

        if (op->done) {
            op->done(op);

        } else {
            rd_op_free(op);
        }
    }
}
