/*
 * rd_registry: in-memory instances, the writer thread and TTLs.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_check.h"
#include "rd_metrics.h"
#include "rd_registry.h"

#define RD_BATCH_MAX   8192
#define RD_KEY_MAX     (2 * RD_NAME_MAX + 16)

typedef struct {
    const char     *service;
    const char     *id;
    rd_instance_t  *inst;        /* NULL: deleted in this batch */
    int             used;
} rd_overlay_slot_t;

typedef struct {
    rd_overlay_slot_t  *slots;
    size_t              mask;
} rd_overlay_t;

typedef struct {
    rd_policy_t   **v;
    size_t          n;
    size_t          cap;
    int             init;
} rd_policy_views_t;

static void *rd_registry_writer(void *arg);
static void rd_registry_commit_batch(rd_registry_t *reg, rd_op_t *batch);


static uint64_t
rd_hash(const char *service, const char *id)
{
    uint64_t              h = 1469598103934665603ULL;
    const unsigned char  *p;

    for (p = (const unsigned char *) service; *p; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }

    h = (h ^ '/') * 1099511628211ULL;

    for (p = (const unsigned char *) id; *p; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }

    return h;
}


static void
rd_store_key(char *key, const char *service, const char *id)
{
    snprintf(key, RD_KEY_MAX, "instances/%s/%s", service, id);
}


/* instances */

rd_instance_t *
rd_instance_create(void)
{
    rd_instance_t  *in;

    in = calloc(1, sizeof(rd_instance_t));
    if (in == NULL) {
        return NULL;
    }

    in->weight = 1;
    return in;
}


void
rd_instance_free(rd_instance_t *in)
{
    if (in == NULL) {
        return;
    }

    free(in->zone);
    free(in->labels);
    free(in->check);
    free(in->snap);
    free(in);
}


static char *
rd_strdup_null(const char *s)
{
    char  *p;

    if (s == NULL) {
        return NULL;
    }

    p = strdup(s);
    if (p == NULL) {
        fprintf(stderr, "registryd: out of memory\n");
        abort();
    }

    return p;
}


rd_instance_t *
rd_instance_dup(const rd_instance_t *in)
{
    rd_instance_t  *c;

    c = malloc(sizeof(rd_instance_t));
    if (c == NULL) {
        return NULL;
    }

    *c = *in;
    c->next = NULL;
    c->zone = rd_strdup_null(in->zone);
    c->labels = rd_strdup_null(in->labels);
    c->check = rd_strdup_null(in->check);
    c->snap = NULL;
    c->snap_len = 0;

    if (in->snap) {
        c->snap = malloc(in->snap_len + 1);
        if (c->snap == NULL) {
            fprintf(stderr, "registryd: out of memory\n");
            abort();
        }
        memcpy(c->snap, in->snap, in->snap_len + 1);
        c->snap_len = in->snap_len;
    }

    return c;
}


static int
rd_json_duration(json_t *v, const char *name, int64_t min, int64_t max,
    int64_t *out, char *err, const char **field, const char *fname)
{
    int64_t  ms;

    if (!json_is_string(v)) {
        snprintf(err, RD_ERR_LEN, "%s must be a duration string such as "
                 "\"10s\"", name);
        *field = fname;
        return -1;
    }

    ms = mesh_duration_parse(json_string_value(v));
    if (ms < min || ms > max) {
        snprintf(err, RD_ERR_LEN, "%s must be a duration between %llds and "
                 "%lldh, such as \"10s\"", name, (long long) (min / 1000),
                 (long long) (max / 3600000));
        *field = fname;
        return -1;
    }

    *out = ms;
    return 0;
}


/* validated by rd_health, stored as given (compact, sorted keys) */
static int
rd_instance_check_from_json(json_t *chk, char **out, char *err,
    const char **field)
{
    rd_check_t  c;

    if (rd_check_from_json(chk, &c, err, field) != 0) {
        return -1;
    }

    *out = json_dumps(chk, JSON_COMPACT | JSON_SORT_KEYS);
    if (*out == NULL) {
        snprintf(err, RD_ERR_LEN, "out of memory");
        return -1;
    }

    return 0;
}


static int
rd_labels_from_json(json_t *labels, char **out, char *err,
    const char **field)
{
    json_t      *v;
    const char  *k;

    *field = "labels";

    if (!json_is_object(labels)) {
        snprintf(err, RD_ERR_LEN, "labels must be an object of strings");
        return -1;
    }

    if (json_object_size(labels) > 64) {
        snprintf(err, RD_ERR_LEN, "at most 64 labels");
        return -1;
    }

    json_object_foreach(labels, k, v) {
        if (!mesh_name_valid(k, strlen(k))) {
            snprintf(err, RD_ERR_LEN, "label name \"%.64s\" is not a valid "
                     "name", k);
            return -1;
        }

        if (!json_is_string(v) || json_string_length(v) > 256) {
            snprintf(err, RD_ERR_LEN, "label \"%.64s\" must be a string of "
                     "at most 256 bytes", k);
            return -1;
        }

        if (memchr(json_string_value(v), '\0', json_string_length(v))) {
            snprintf(err, RD_ERR_LEN, "label \"%.64s\" holds a NUL", k);
            return -1;
        }
    }

    *out = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
    if (*out == NULL) {
        snprintf(err, RD_ERR_LEN, "out of memory");
        return -1;
    }

    return 0;
}


int
rd_instance_from_json(json_t *obj, int stored, rd_instance_t *in, char *err,
    const char **field)
{
    int          have_addr = 0, have_port = 0;
    json_t      *v;
    json_int_t   n;
    const char  *k, *s;

    *field = NULL;

    if (!json_is_object(obj)) {
        snprintf(err, RD_ERR_LEN, "body must be a JSON object");
        return -1;
    }

    json_object_foreach(obj, k, v) {

        if (strcmp(k, "address") == 0) {
            s = json_string_value(v);
            if (s == NULL || json_string_length(v) >= sizeof(in->address)
                || rd_addr_valid(s) != 0)
            {
                snprintf(err, RD_ERR_LEN, "address must be an IPv4 or IPv6 "
                         "address");
                *field = "address";
                return -1;
            }
            strcpy(in->address, s);
            have_addr = 1;

        } else if (strcmp(k, "port") == 0) {
            n = json_is_integer(v) ? json_integer_value(v) : 0;
            if (n < 1 || n > 65535) {
                snprintf(err, RD_ERR_LEN, "port must be an integer "
                         "1..65535");
                *field = "port";
                return -1;
            }
            in->port = (int) n;
            have_port = 1;

        } else if (strcmp(k, "weight") == 0) {
            n = json_is_integer(v) ? json_integer_value(v) : 0;
            if (n < 1 || n > 1000) {
                snprintf(err, RD_ERR_LEN, "weight must be an integer "
                         "1..1000");
                *field = "weight";
                return -1;
            }
            in->weight = (int) n;

        } else if (strcmp(k, "zone") == 0) {
            s = json_string_value(v);
            if (s == NULL || json_string_length(v) > RD_NAME_MAX
                || (json_string_length(v)
                    && !mesh_name_valid(s, json_string_length(v))))
            {
                snprintf(err, RD_ERR_LEN, "zone must be a name of at most "
                         "128 characters");
                *field = "zone";
                return -1;
            }
            free(in->zone);
            in->zone = json_string_length(v) ? rd_strdup_null(s) : NULL;

        } else if (strcmp(k, "labels") == 0) {
            free(in->labels);
            in->labels = NULL;
            if (rd_labels_from_json(v, &in->labels, err, field) != 0) {
                return -1;
            }

        } else if (strcmp(k, "ttl") == 0) {
            if (rd_json_duration(v, "ttl", 1000, 86400000, &in->ttl, err,
                                 field, "ttl") != 0)
            {
                return -1;
            }

        } else if (strcmp(k, "deregister_after") == 0) {
            if (rd_json_duration(v, "deregister_after", 1000, 86400000,
                                 &in->deregister_after, err, field,
                                 "deregister_after") != 0)
            {
                return -1;
            }

        } else if (strcmp(k, "check") == 0) {
            free(in->check);
            in->check = NULL;
            if (rd_instance_check_from_json(v, &in->check, err, field)
                != 0)
            {
                return -1;
            }

        } else if (stored && strcmp(k, "health") == 0) {
            s = json_string_value(v);
            in->health = (s && strcmp(s, "critical") == 0)
                         ? RD_HEALTH_CRITICAL : RD_HEALTH_PASSING;

        } else if (stored && strcmp(k, "create_index") == 0) {
            in->create_index = (uint64_t) json_integer_value(v);

        } else if (stored && strcmp(k, "modify_index") == 0) {
            in->modify_index = (uint64_t) json_integer_value(v);

        } else if (stored && (strcmp(k, "service") == 0
                              || strcmp(k, "id") == 0))
        {
            /* the key names them */

        } else {
            snprintf(err, RD_ERR_LEN, "unknown field \"%.64s\"", k);
            *field = k;
            return -1;
        }
    }

    if (!have_addr) {
        snprintf(err, RD_ERR_LEN, "address is required");
        *field = "address";
        return -1;
    }

    if (!have_port) {
        snprintf(err, RD_ERR_LEN, "port is required");
        *field = "port";
        return -1;
    }

    if (in->labels == NULL) {
        in->labels = rd_strdup_null("{}");
    }

    return 0;
}


void
rd_instance_to_json(rd_buf_t *b, const rd_instance_t *in, int form)
{
    char  d[32];

    rd_buf_adds(b, "{");

    if (form != RD_JSON_SNAPSHOT) {
        rd_buf_adds(b, "\"service\":");
        rd_buf_add_json_str(b, in->service);
        rd_buf_addc(b, ',');
    }

    rd_buf_adds(b, "\"id\":");
    rd_buf_add_json_str(b, in->id);
    rd_buf_adds(b, ",\"address\":");
    rd_buf_add_json_str(b, in->address);
    rd_buf_adds(b, ",\"port\":");
    rd_buf_add_u64(b, (uint64_t) in->port);
    rd_buf_adds(b, ",\"weight\":");
    rd_buf_add_u64(b, (uint64_t) in->weight);

    if (in->zone) {
        rd_buf_adds(b, ",\"zone\":");
        rd_buf_add_json_str(b, in->zone);
    }

    rd_buf_adds(b, ",\"labels\":");
    rd_buf_adds(b, in->labels ? in->labels : "{}");

    if (form != RD_JSON_SNAPSHOT) {
        if (in->ttl) {
            mesh_duration_format(in->ttl, d, sizeof(d));
            rd_buf_adds(b, ",\"ttl\":");
            rd_buf_add_json_str(b, d);
        }

        if (in->deregister_after) {
            mesh_duration_format(in->deregister_after, d, sizeof(d));
            rd_buf_adds(b, ",\"deregister_after\":");
            rd_buf_add_json_str(b, d);
        }

        if (in->check) {
            rd_buf_adds(b, ",\"check\":");
            rd_buf_adds(b, in->check);
        }
    }

    rd_buf_adds(b, ",\"health\":");
    rd_buf_adds(b, in->health == RD_HEALTH_PASSING ? "\"passing\""
                                                    : "\"critical\"");

    if (form == RD_JSON_STORED) {
        rd_buf_adds(b, ",\"create_index\":");
        rd_buf_add_u64(b, in->create_index);
        rd_buf_adds(b, ",\"modify_index\":");
        rd_buf_add_u64(b, in->modify_index);
    }

    rd_buf_addc(b, '}');
}


/* ops */

rd_op_t *
rd_op_create(int type, const char *service, const char *id)
{
    rd_op_t  *op;

    op = calloc(1, sizeof(rd_op_t));
    if (op == NULL) {
        return NULL;
    }

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

    rd_instance_free(op->inst);
    rd_policy_free(op->policy);
    rd_buf_free(&op->body);
    free(op);
}


/* policies: a sorted array of pointers (there are few) */

static size_t
rd_policy_pos(rd_policy_t *const *v, size_t n, const char *name, int *found)
{
    int     c;
    size_t  lo = 0, hi = n, mid;

    *found = 0;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = strcmp(v[mid]->name, name);

        if (c == 0) {
            *found = 1;
            return mid;
        }

        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return lo;
}


/* insert, replace (p != NULL) or remove (p == NULL); returns the pointer
 * that was there, for the caller to free or not */
static rd_policy_t *
rd_policy_array_set(rd_policy_t ***v, size_t *n, size_t *cap,
    const char *name, rd_policy_t *p)
{
    int            found;
    size_t         i;
    rd_policy_t   *old, **nv;

    i = rd_policy_pos(*v, *n, name, &found);
    old = found ? (*v)[i] : NULL;

    if (found && p) {
        (*v)[i] = p;
        return old;
    }

    if (found) {
        memmove(&(*v)[i], &(*v)[i + 1], (*n - i - 1) * sizeof(rd_policy_t *));
        (*n)--;
        return old;
    }

    if (p == NULL) {
        return NULL;
    }

    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        nv = realloc(*v, *cap * sizeof(rd_policy_t *));
        if (nv == NULL) {
            fprintf(stderr, "registryd: out of memory\n");
            abort();
        }
        *v = nv;
    }

    memmove(&(*v)[i + 1], &(*v)[i], (*n - i) * sizeof(rd_policy_t *));
    (*v)[i] = p;
    (*n)++;

    return NULL;
}


rd_policy_t *
rd_registry_find_policy(rd_registry_t *reg, const char *name)
{
    int     found;
    size_t  i;

    i = rd_policy_pos(reg->policies, reg->npolicies, name, &found);

    return found ? reg->policies[i] : NULL;
}


static void
rd_registry_set_policy(rd_registry_t *reg, const char *name, rd_policy_t *p)
{
    rd_policy_free(rd_policy_array_set(&reg->policies, &reg->npolicies,
                                       &reg->policies_cap, name, p));
}


/* the table */

static rd_instance_t **
rd_registry_slot(rd_registry_t *reg, const char *service, const char *id)
{
    rd_instance_t  **pp;

    pp = &reg->buckets[rd_hash(service, id) & (reg->nbuckets - 1)];

    for ( /* void */ ; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0
            && strcmp((*pp)->service, service) == 0)
        {
            break;
        }
    }

    return pp;
}


rd_instance_t *
rd_registry_find(rd_registry_t *reg, const char *service, const char *id)
{
    return *rd_registry_slot(reg, service, id);
}


static void
rd_registry_grow(rd_registry_t *reg)
{
    size_t           i, n;
    rd_instance_t   *in, *next, **nb;

    n = reg->nbuckets * 2;

    nb = calloc(n, sizeof(rd_instance_t *));
    if (nb == NULL) {
        return;             /* longer chains, still correct */
    }

    for (i = 0; i < reg->nbuckets; i++) {
        for (in = reg->buckets[i]; in; in = next) {
            size_t h = rd_hash(in->service, in->id) & (n - 1);

            next = in->next;
            in->next = nb[h];
            nb[h] = in;
        }
    }

    free(reg->buckets);
    reg->buckets = nb;
    reg->nbuckets = n;
}


static void
rd_ptr_push(rd_instance_t ***arr, size_t *n, size_t *cap, rd_instance_t *in)
{
    rd_instance_t  **p;

    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        p = realloc(*arr, *cap * sizeof(rd_instance_t *));
        if (p == NULL) {
            fprintf(stderr, "registryd: out of memory\n");
            abort();
        }
        *arr = p;
    }

    (*arr)[(*n)++] = in;
}


static void
rd_instance_snap(rd_instance_t *in)
{
    rd_buf_t  b;

    rd_buf_init(&b, 192);
    rd_instance_to_json(&b, in, RD_JSON_SNAPSHOT);
    rd_buf_cstr(&b);

    free(in->snap);
    in->snap = b.data;
    in->snap_len = b.len;
}


/*
 * Replace or insert (in != NULL) or remove (in == NULL); write lock held.
 * A replaced instance keeps its node, so sorted views stay valid; a
 * removed one is parked in reg->dead until the sorted view drops it.
 */
static void
rd_registry_set(rd_registry_t *reg, const char *service, const char *id,
    rd_instance_t *in)
{
    rd_instance_t  **pp, *old, *next;

    pp = rd_registry_slot(reg, service, id);
    old = *pp;

    if (in) {
        rd_instance_snap(in);
        reg->nttl += (in->ttl != 0);
    }

    if (old) {
        reg->nttl -= (old->ttl != 0);
    }

    if (old && in) {
        next = old->next;
        free(old->zone);
        free(old->labels);
        free(old->check);
        free(old->snap);
        *old = *in;
        old->next = next;
        free(in);
        return;
    }

    if (old) {
        *pp = old->next;
        old->next = NULL;
        old->dead = 1;
        reg->count--;
        rd_ptr_push(&reg->dead, &reg->ndead, &reg->dead_cap, old);
        return;
    }

    if (in == NULL) {
        return;
    }

    in->next = NULL;
    *pp = in;
    reg->count++;
    rd_ptr_push(&reg->added, &reg->nadded, &reg->added_cap, in);

    if (reg->count > reg->nbuckets) {
        rd_registry_grow(reg);
    }
}


static int
rd_instance_cmp(const void *a, const void *b)
{
    const rd_instance_t  *x = *(rd_instance_t *const *) a;
    const rd_instance_t  *y = *(rd_instance_t *const *) b;
    int                   c;

    c = strcmp(x->service, y->service);
    return c ? c : strcmp(x->id, y->id);
}


/* merge added and drop dead instances; sort_lock (or write lock) held */
static void
rd_registry_refresh_sorted(rd_registry_t *reg)
{
    size_t           i, j, k, total;
    rd_instance_t  **merged, *a, *b;

    if (reg->nadded == 0 && reg->ndead == 0) {
        return;
    }

    qsort(reg->added, reg->nadded, sizeof(rd_instance_t *),
          rd_instance_cmp);

    total = reg->nsorted + reg->nadded;
    merged = malloc((total + 1) * sizeof(rd_instance_t *));
    if (merged == NULL) {
        fprintf(stderr, "registryd: out of memory\n");
        abort();
    }

    i = 0;
    j = 0;
    k = 0;

    while (i < reg->nsorted || j < reg->nadded) {
        a = i < reg->nsorted ? reg->sorted[i] : NULL;
        b = j < reg->nadded ? reg->added[j] : NULL;

        if (a && a->dead) {
            i++;
            continue;
        }

        if (b && b->dead) {
            j++;
            continue;
        }

        if (b == NULL || (a && rd_instance_cmp(&a, &b) < 0)) {
            merged[k++] = a;
            i++;

        } else {
            merged[k++] = b;
            j++;
        }
    }

    free(reg->sorted);
    reg->sorted = merged;
    reg->nsorted = k;
    reg->nadded = 0;

    for (i = 0; i < reg->ndead; i++) {
        rd_instance_free(reg->dead[i]);
    }

    reg->ndead = 0;
}


rd_instance_t **
rd_registry_sorted(rd_registry_t *reg, size_t *n)
{
    rd_instance_t  **all;

    pthread_mutex_lock(&reg->sort_lock);

    rd_registry_refresh_sorted(reg);

    all = malloc((reg->nsorted + 1) * sizeof(rd_instance_t *));
    if (all) {
        if (reg->nsorted) {
            memcpy(all, reg->sorted, reg->nsorted * sizeof(rd_instance_t *));
        }
        *n = reg->nsorted;
    }

    pthread_mutex_unlock(&reg->sort_lock);

    return all;
}


static int
rd_registry_load_one(void *data, const char *key, const char *value,
    size_t len, char *err)
{
    char             svc[RD_NAME_MAX + 1], msg[RD_ERR_LEN];
    json_t          *obj;
    int64_t          now;
    const char      *p, *slash, *field;
    json_error_t     jerr;
    rd_registry_t   *reg = data;
    rd_instance_t   *in;

    if (strncmp(key, "policies/", 9) == 0) {
        rd_policy_t  *pol;

        if (!mesh_name_valid(key + 9, strlen(key + 9))) {
            rd_warn("store: skipping bad key \"%s\"", key);
            return 0;
        }

        pol = rd_policy_from_stored(key + 9, value, len, msg);
        if (pol == NULL) {
            rd_error("store: cannot load policy \"%s\" (kept in the "
                     "store, not served): %s", key + 9, msg);
            return 0;
        }

        rd_registry_set_policy(reg, pol->name, pol);
        return 0;
    }

    if (strncmp(key, "instances/", 10) != 0) {
        return 0;           /* later kinds */
    }

    p = key + 10;
    slash = strchr(p, '/');
    if (slash == NULL || (size_t) (slash - p) > RD_NAME_MAX
        || !mesh_name_valid(p, (size_t) (slash - p))
        || !mesh_name_valid(slash + 1, strlen(slash + 1)))
    {
        rd_warn("store: skipping bad key \"%s\"", key);
        return 0;
    }

    memcpy(svc, p, (size_t) (slash - p));
    svc[slash - p] = '\0';

    obj = json_loadb(value, len, 0, &jerr);
    in = rd_instance_create();
    if (in == NULL) {
        json_decref(obj);
        snprintf(err, RD_ERR_LEN, "out of memory");
        return -1;
    }

    if (obj == NULL || rd_instance_from_json(obj, 1, in, msg, &field) != 0) {
        rd_warn("store: skipping bad value of \"%s\": %s", key,
                obj ? msg : jerr.text);
        json_decref(obj);
        rd_instance_free(in);
        return 0;
    }

    json_decref(obj);

    snprintf(in->service, sizeof(in->service), "%s", svc);
    snprintf(in->id, sizeof(in->id), "%s", slash + 1);

    /* TTLs restart: every instance gets one full ttl to check in */
    now = rd_now_ms();
    in->last_seen = now;
    in->critical_since = now;

    /* which of TTL and check made it critical is not stored: a check
     * must pass again, and a TTL needs a heartbeat */
    if (in->health == RD_HEALTH_CRITICAL) {
        in->check_critical = (in->check != NULL);
        in->ttl_critical = (in->check == NULL || in->ttl != 0);
    }

    in->put_index = in->modify_index;

    rd_registry_set(reg, in->service, in->id, in);
    return 0;
}


rd_registry_t *
rd_registry_create(rd_store_t *store, char *err)
{
    rd_registry_t  *reg;

    reg = calloc(1, sizeof(rd_registry_t));
    if (reg == NULL) {
        snprintf(err, RD_ERR_LEN, "out of memory");
        return NULL;
    }

    reg->nbuckets = 1024;
    reg->buckets = calloc(reg->nbuckets, sizeof(rd_instance_t *));
    if (reg->buckets == NULL) {
        snprintf(err, RD_ERR_LEN, "out of memory");
        goto fail;
    }

    pthread_rwlock_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->sort_lock, NULL);
    pthread_mutex_init(&reg->qlock, NULL);
    pthread_cond_init(&reg->qcond, NULL);

    reg->store = store;

    if (rd_store_load(store, rd_registry_load_one, reg, &reg->index, err)
        != 0)
    {
        goto fail;
    }

    reg->store_ok = 1;
    return reg;

fail:

    rd_registry_free(reg);
    return NULL;
}


void
rd_registry_free(rd_registry_t *reg)
{
    size_t          i;
    rd_instance_t  *in, *next;

    if (reg == NULL) {
        return;
    }

    if (reg->running) {
        rd_registry_stop(reg);
    }

    if (reg->buckets) {
        for (i = 0; i < reg->nbuckets; i++) {
            for (in = reg->buckets[i]; in; in = next) {
                next = in->next;
                rd_instance_free(in);
            }
        }

        free(reg->buckets);

        for (i = 0; i < reg->ndead; i++) {
            rd_instance_free(reg->dead[i]);
        }

        for (i = 0; i < reg->npolicies; i++) {
            rd_policy_free(reg->policies[i]);
        }

        free(reg->policies);
        free(reg->dead);
        free(reg->added);
        free(reg->sorted);
        pthread_mutex_destroy(&reg->sort_lock);
        pthread_rwlock_destroy(&reg->lock);
        pthread_mutex_destroy(&reg->qlock);
        pthread_cond_destroy(&reg->qcond);
    }

    free(reg);
}


int
rd_registry_start(rd_registry_t *reg, char *err)
{
    if (pthread_create(&reg->writer, NULL, rd_registry_writer, reg) != 0) {
        snprintf(err, RD_ERR_LEN, "cannot start the writer thread");
        return -1;
    }

    reg->running = 1;
    return 0;
}


void
rd_registry_stop(rd_registry_t *reg)
{
    if (!reg->running) {
        return;
    }

    pthread_mutex_lock(&reg->qlock);
    reg->stopping = 1;
    pthread_cond_signal(&reg->qcond);
    pthread_mutex_unlock(&reg->qlock);

    pthread_join(reg->writer, NULL);
    reg->running = 0;
}


uint64_t
rd_registry_index(rd_registry_t *reg)
{
    return __atomic_load_n(&reg->index, __ATOMIC_ACQUIRE);
}


uint64_t
rd_registry_id(rd_registry_t *reg)
{
    return reg->store ? reg->store->id : 0;
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


static void *
rd_registry_writer(void *arg)
{
    size_t          n;
    rd_op_t        *batch, *last;
    rd_registry_t  *reg = arg;

    for ( ;; ) {
        pthread_mutex_lock(&reg->qlock);

        while (reg->qhead == NULL && !reg->stopping) {
            pthread_cond_wait(&reg->qcond, &reg->qlock);
        }

        if (reg->qhead == NULL) {
            pthread_mutex_unlock(&reg->qlock);
            break;
        }

        /* take up to RD_BATCH_MAX ops */
        batch = reg->qhead;
        last = batch;
        for (n = 1; n < RD_BATCH_MAX && last->next; n++) {
            last = last->next;
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

    i = rd_hash(service, id) & ov->mask;

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

    if (!pv->init) {
        pv->init = 1;
        pv->n = reg->npolicies;
        pv->cap = reg->npolicies + 16;
        pv->v = malloc(pv->cap * sizeof(rd_policy_t *));
        if (pv->v == NULL) {
            fprintf(stderr, "registryd: out of memory\n");
            abort();
        }
        if (reg->npolicies) {
            memcpy(pv->v, reg->policies,
                   reg->npolicies * sizeof(rd_policy_t *));
        }
    }

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


/* the event of a committed op, before it is applied; write lock held */
static void
rd_registry_event(rd_registry_t *reg, const rd_op_t *op, int64_t time)
{
    rd_event_t      e;
    rd_instance_t  *cur;

    if (reg->events == NULL) {
        return;
    }

    e.index = op->index;
    e.time = time;
    e.reason = NULL;
    snprintf(e.service, sizeof(e.service), "%s", op->service);
    snprintf(e.id, sizeof(e.id), "%s", op->id);

    switch (op->type) {

    case RD_OP_PUT:
        e.type = (op->status == 201) ? RD_EV_REGISTERED : RD_EV_UPDATED;
        break;

    case RD_OP_DEL:
        e.type = RD_EV_DEREGISTERED;
        e.reason = op->reason ? op->reason
                              : op->internal ? "deregister_after" : "api";
        break;

    case RD_OP_HEALTH:
        /* the TTL or the check changed its mind, the health did not */
        cur = rd_registry_find(reg, op->service, op->id);
        if (cur && cur->health == op->health) {
            return;
        }

        e.type = (op->health == RD_HEALTH_PASSING) ? RD_EV_PASSING
                                                   : RD_EV_CRITICAL;
        e.reason = op->reason ? op->reason
                              : op->internal ? "ttl" : "heartbeat";
        break;

    case RD_OP_POLICY_PUT:
        e.type = RD_EV_POLICY_APPLIED;
        e.service[0] = '\0';
        break;

    default: /* RD_OP_POLICY_DEL */
        e.type = RD_EV_POLICY_DELETED;
        e.service[0] = '\0';
        break;
    }

    rd_events_append(reg->events, &e);
}


static void
rd_registry_commit_batch(rd_registry_t *reg, rd_op_t *batch)
{
    int                 ok;
    char                err[RD_ERR_LEN];
    char               *keys;
    size_t              n, nops, i, size;
    int64_t             now, t0, wall;
    uint64_t            index;
    rd_op_t            *op, *next;
    rd_buf_t           *vals;
    rd_overlay_t        ov;
    rd_store_op_t      *sops;
    rd_instance_t      *cur, *in;
    rd_overlay_slot_t  *slot;
    rd_policy_views_t   pv = { NULL, 0, 0, 0 };

    n = 0;
    for (op = batch; op; op = op->next) {
        n++;
    }

    for (size = 4; size < 2 * n; size *= 2) { /* void */ }

    ov.slots = calloc(size, sizeof(rd_overlay_slot_t));
    ov.mask = size - 1;
    sops = calloc(n, sizeof(rd_store_op_t));
    vals = calloc(n, sizeof(rd_buf_t));
    keys = malloc(n * RD_KEY_MAX);

    if (ov.slots == NULL || sops == NULL || vals == NULL || keys == NULL) {
        fprintf(stderr, "registryd: out of memory\n");
        abort();
    }

    index = reg->index;
    nops = 0;
    now = rd_now_ms();

    /* decide each op against the table as the batch has changed it */

    for (op = batch; op; op = op->next) {

        if (op->type == RD_OP_POLICY_PUT || op->type == RD_OP_POLICY_DEL) {
            if (rd_registry_decide_policy(reg, &pv, op, index + 1) != 0) {
                continue;
            }

            index++;
            op->index = index;

            if (op->policy) {
                rd_buf_init(&vals[nops], op->policy->yaml_len * 2 + 256);
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
            if (in == NULL) {
                fprintf(stderr, "registryd: out of memory\n");
                abort();
            }

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

        if (in) {
            in->modify_index = index;
            rd_buf_init(&vals[nops], 256);
            rd_instance_to_json(&vals[nops], in, RD_JSON_STORED);
            sops[nops].value = vals[nops].data;
            sops[nops].value_len = vals[nops].len;
        }

        rd_store_key(keys + nops * RD_KEY_MAX, op->service, op->id);
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
        ok = (rd_store_commit(reg->store, sops, nops, index, err) == 0);
        rd_metrics_commit(rd_now_ms() - t0, nops, ok);

        if (!ok) {
            rd_error("%s", err);
        }

        reg->store_ok = ok;
    }

    if (ok && nops) {
        wall = rd_wall_ms();

        pthread_rwlock_wrlock(&reg->lock);

        for (op = batch; op; op = op->next) {
            if (op->index == 0) {
                continue;
            }

            rd_registry_event(reg, op, wall);

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

            } else {
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
                op->status = 500;
                op->index = 0;
                snprintf(op->err, sizeof(op->err), "%s", err);
            }
        }
    }

    for (i = 0; i < nops; i++) {
        rd_buf_free(&vals[i]);
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

        if (op->index == 0 && op->status != 500) {
            op->index = ok ? index : reg->index;
        }

        if (op->type == RD_OP_POLICY_PUT && op->status < 300) {
            rd_buf_init(&op->body, 256);
            rd_buf_adds(&op->body, "{\"name\":");
            rd_buf_add_json_str(&op->body, op->id);
            rd_buf_printf(&op->body, ",\"documents\":%zu,\"index\":",
                          op->ndocs);
            rd_buf_add_u64(&op->body, op->index);
            rd_buf_addc(&op->body, '}');
        }

        if (op->type == RD_OP_PUT && op->status < 300 && op->inst) {
            rd_buf_init(&op->body, 512);
            rd_instance_to_json(&op->body, op->inst, RD_JSON_FULL);
            op->body.len--;     /* reopen the object for the index */
            rd_buf_adds(&op->body, ",\"index\":");
            rd_buf_add_u64(&op->body, op->index);
            rd_buf_addc(&op->body, '}');
        }

        if (op->done) {
            op->done(op);

        } else {
            rd_op_free(op);
        }
    }
}


int
rd_registry_heartbeat(rd_registry_t *reg, const char *service,
    const char *id, uint64_t *index)
{
    int             rc;
    rd_instance_t  *in;

    pthread_rwlock_rdlock(&reg->lock);

    in = rd_registry_find(reg, service, id);

    if (in == NULL) {
        rc = -1;

    } else {
        __atomic_store_n(&in->last_seen, rd_now_ms(), __ATOMIC_RELAXED);
        rc = (in->health == RD_HEALTH_PASSING) ? 0 : 1;
    }

    *index = reg->index;

    pthread_rwlock_unlock(&reg->lock);

    return rc;
}


void
rd_registry_scan_ttl(rd_registry_t *reg)
{
    size_t          i;
    int64_t         now, seen;
    rd_op_t        *op, *head, **tail;
    rd_instance_t  *in;

    now = rd_now_ms();
    head = NULL;
    tail = &head;

    pthread_rwlock_rdlock(&reg->lock);

    for (i = 0; reg->nttl && i < reg->nbuckets; i++) {
        for (in = reg->buckets[i]; in; in = in->next) {

            if (in->ttl == 0
                || __atomic_load_n(&in->pending, __ATOMIC_RELAXED))
            {
                continue;
            }

            seen = __atomic_load_n(&in->last_seen, __ATOMIC_RELAXED);

            if (!in->ttl_critical && now - seen > in->ttl) {
                op = rd_op_create(RD_OP_HEALTH, in->service, in->id);
                if (op == NULL) {
                    goto done;
                }
                op->health = RD_HEALTH_CRITICAL;
                op->seen = seen;
                op->reason = "ttl";

            } else if (in->health == RD_HEALTH_CRITICAL
                       && in->deregister_after
                       && now - in->critical_since > in->deregister_after)
            {
                op = rd_op_create(RD_OP_DEL, in->service, in->id);
                if (op == NULL) {
                    goto done;
                }
                op->reason = "deregister_after";

            } else {
                continue;
            }

            op->internal = 1;
            __atomic_store_n(&in->pending, 1, __ATOMIC_RELAXED);
            *tail = op;
            tail = &op->next;
        }
    }

done:

    pthread_rwlock_unlock(&reg->lock);

    while (head) {
        op = head;
        head = op->next;
        rd_debug("ttl: %s/%s %s", op->service, op->id,
                 op->type == RD_OP_DEL ? "deregister after critical"
                                       : "turns critical");
        rd_registry_submit(reg, op);
    }
}


void
rd_registry_count_health(rd_registry_t *reg, size_t *passing,
    size_t *critical)
{
    size_t          i;
    rd_instance_t  *in;

    *passing = 0;
    *critical = 0;

    pthread_rwlock_rdlock(&reg->lock);

    for (i = 0; i < reg->nbuckets; i++) {
        for (in = reg->buckets[i]; in; in = in->next) {
            if (in->health == RD_HEALTH_PASSING) {
                (*passing)++;
            } else {
                (*critical)++;
            }
        }
    }

    pthread_rwlock_unlock(&reg->lock);
}
