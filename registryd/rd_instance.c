/*
 * rd_instance: an instance: read from the API's JSON (validated, its
 * check through rd_check), written back, copied and freed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "mesh_locality.h"
#include "rd_check.h"
#include "rd_metrics.h"
#include "rd_registry_int.h"


rd_instance_t *
rd_instance_create(void)
{
    rd_instance_t  *in;

    in = mesh_xcalloc(1, sizeof(rd_instance_t));

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
    return s ? mesh_xstrdup(s) : NULL;
}


rd_instance_t *
rd_instance_dup(const rd_instance_t *in)
{
    rd_instance_t  *c;

    c = mesh_xmalloc(sizeof(rd_instance_t));

    *c = *in;
    c->next = NULL;
    c->zone = rd_strdup_null(in->zone);
    c->labels = rd_strdup_null(in->labels);
    c->check = rd_strdup_null(in->check);
    c->snap = NULL;
    c->snap_len = 0;

    if (in->snap) {
        c->snap = mesh_xmalloc(in->snap_len + 1);
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

    *out = json_dumps(chk, JSON_COMPACT | JSON_SORT_KEYS);   /* mesh_alloc */

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

    *out = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);   /* mesh_alloc */

    return 0;
}


int
rd_instance_from_json(json_t *obj, int stored, rd_instance_t *in, char *err,
    const char **field)
{
    int              have_addr = 0, have_port = 0;
    json_t          *v;
    json_int_t       n;
    const char      *k, *s;
    mesh_locality_t  loc;

    *field = NULL;

    if (!json_is_object(obj)) {
        snprintf(err, RD_ERR_LEN, "body must be a JSON object");
        return -1;
    }

    json_object_foreach(obj, k, v) {

        if (strcmp(k, "address") == 0) {
            s = json_string_value(v);
            if (s == NULL || json_string_length(v) >= sizeof(in->address)
                || !mesh_addr_valid(s))
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
            if (s == NULL || json_string_length(v) > MESH_LOCALITY_MAX
                || (json_string_length(v)
                    && mesh_locality_parse(s, json_string_length(v), &loc)
                       != 0))
            {
                snprintf(err, RD_ERR_LEN, "zone must be a locality: region, "
                         "region/zone or region/zone/subzone, each a name, "
                         "at most 128 characters in all");
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
rd_instance_to_json(mesh_buf_t *b, const rd_instance_t *in, int form)
{
    char  d[32];

    mesh_buf_adds(b, "{");

    if (form != RD_JSON_SNAPSHOT) {
        mesh_buf_adds(b, "\"service\":");
        mesh_buf_add_json_str(b, in->service);
        mesh_buf_addc(b, ',');
    }

    mesh_buf_adds(b, "\"id\":");
    mesh_buf_add_json_str(b, in->id);
    mesh_buf_adds(b, ",\"address\":");
    mesh_buf_add_json_str(b, in->address);
    mesh_buf_adds(b, ",\"port\":");
    mesh_buf_add_u64(b, (uint64_t) in->port);
    mesh_buf_adds(b, ",\"weight\":");
    mesh_buf_add_u64(b, (uint64_t) in->weight);

    if (in->zone) {
        mesh_buf_adds(b, ",\"zone\":");
        mesh_buf_add_json_str(b, in->zone);
    }

    mesh_buf_adds(b, ",\"labels\":");
    mesh_buf_adds(b, in->labels ? in->labels : "{}");

    if (form != RD_JSON_SNAPSHOT) {
        if (in->ttl) {
            mesh_duration_format(in->ttl, d, sizeof(d));
            mesh_buf_adds(b, ",\"ttl\":");
            mesh_buf_add_json_str(b, d);
        }

        if (in->deregister_after) {
            mesh_duration_format(in->deregister_after, d, sizeof(d));
            mesh_buf_adds(b, ",\"deregister_after\":");
            mesh_buf_add_json_str(b, d);
        }

        if (in->check) {
            mesh_buf_adds(b, ",\"check\":");
            mesh_buf_adds(b, in->check);
        }
    }

    mesh_buf_adds(b, ",\"health\":");
    mesh_buf_adds(b, in->health == RD_HEALTH_PASSING ? "\"passing\""
                                                    : "\"critical\"");

    if (form == RD_JSON_STORED) {
        mesh_buf_adds(b, ",\"create_index\":");
        mesh_buf_add_u64(b, in->create_index);
        mesh_buf_adds(b, ",\"modify_index\":");
        mesh_buf_add_u64(b, in->modify_index);
    }

    mesh_buf_addc(b, '}');
}
