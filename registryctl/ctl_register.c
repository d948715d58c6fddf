/*
 * ctl_register: an instance as the command line describes it, for
 * register and run: the options (--weight, --ttl, --zone,
 * --deregister-after, --label, and run's --check), their checks, and
 * the JSON body of PUT /v1/services/SVC/instances/ID.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"


const struct option  ctl_register_options[] = {
    { "weight", required_argument, NULL, CTL_O_WEIGHT },
    { "ttl", required_argument, NULL, CTL_O_TTL },
    { "zone", required_argument, NULL, CTL_O_ZONE },
    { "deregister-after", required_argument, NULL, CTL_O_DEREGISTER_AFTER },
    { "label", required_argument, NULL, CTL_O_LABEL },
    { NULL, 0, NULL, 0 }
};


/* one option of ctl_register_options; 1 when taken, 0 when not one */
int
ctl_register_take(void *ctx, int opt, const char *v, char *err)
{
    ctl_register_t  *reg = ctx;

    char         key[CTL_NAME_MAX + 1];
    const char  *eq;

    switch (opt) {

    case CTL_O_WEIGHT:
        reg->weight = v;
        return 1;

    case CTL_O_TTL:
        reg->ttl = v;
        return 1;

    case CTL_O_ZONE:
        reg->zone = v;
        return 1;

    case CTL_O_DEREGISTER_AFTER:
        reg->dereg = v;
        return 1;

    case CTL_O_LABEL:
        eq = strchr(v, '=');
        if (eq == NULL || eq == v || eq - v >= CTL_NAME_MAX) {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid --label \"%.64s\": expected k=v", v);
        }

        snprintf(key, sizeof(key), "%.*s", (int) (eq - v), v);

        if (!mesh_name_valid(key, strlen(key))) {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid label key \"%.64s\": must match "
                             MESH_NAME_RULE, key);
        }

        if (json_object_set_new(reg->labels, key, json_string(eq + 1)) != 0)
        {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid --label \"%.64s\": value is not UTF-8",
                             v);
        }

        return 1;
    }

    return 0;
}


/*
 * pos: SVC ID ADDR:PORT.  Checks them and the options taken, and fills
 * req with the registration; addr receives the bare address literal.
 */
int
ctl_register_body(ctl_register_t *reg, const char **pos, json_t *req,
    char *addr, size_t size, int *port, char *err)
{
    int      rc;
    long     weight;
    json_t  *check;

    if ((rc = ctl_check_name("service name", pos[0], err)) != 0
        || (rc = ctl_check_name("instance id", pos[1], err)) != 0
        || (rc = ctl_parse_addr_port(pos[2], addr, size, port, err)) != 0)
    {
        return rc;
    }

    json_object_set_new(req, "address", json_string(addr));
    json_object_set_new(req, "port", json_integer(*port));

    if (reg->weight) {
        if (ctl_parse_long(reg->weight, 1, 1000, &weight) != 0) {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid --weight \"%.32s\": weight must be "
                             "1..1000", reg->weight);
        }

        json_object_set_new(req, "weight", json_integer(weight));
    }

    if (reg->zone) {
        if (reg->zone[0] == '\0' || strlen(reg->zone) > CTL_NAME_MAX) {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid --zone: must be 1..128 bytes");
        }

        if (json_object_set_new(req, "zone", json_string(reg->zone)) != 0) {
            return ctl_error(err, CTL_EUSAGE, "invalid --zone: not UTF-8");
        }
    }

    if (reg->ttl) {
        if ((rc = ctl_check_ttl("--ttl", reg->ttl, err)) != 0) {
            return rc;
        }

        json_object_set_new(req, "ttl", json_string(reg->ttl));
    }

    if (reg->dereg) {
        if ((rc = ctl_check_ttl("--deregister-after", reg->dereg, err)) != 0)
        {
            return rc;
        }

        json_object_set_new(req, "deregister_after",
                            json_string(reg->dereg));
    }

    if (json_object_size(reg->labels) > 0) {
        json_object_set(req, "labels", reg->labels);
    }

    if (reg->check) {
        if ((rc = ctl_check_spec(reg->check, &check, err)) != 0) {
            return rc;
        }

        json_object_set_new(req, "check", check);
    }

    return 0;
}


/*
 * --check SPEC: "tcp" or "http:PATH", then ",KEY=VALUE" for the check's
 * other fields (interval, timeout, status, healthy_threshold,
 * unhealthy_threshold), checked against registryd's bounds
 * (docs/registryd.md, "Health checks") so that a mistake stops run
 * before its command starts.  PATH runs up to the first comma.
 */
int
ctl_check_spec(const char *spec, json_t **check, char *err)
{
    long         n, lo, hi;
    char         key[32], val[256];
    size_t       klen, vlen;
    int64_t      ms;
    json_t      *j;
    const char  *p, *end, *eq, *path;

    j = json_object();
    end = spec + strcspn(spec, ",");

    if (end - spec == 3 && strncmp(spec, "tcp", 3) == 0) {
        json_object_set_new(j, "tcp", json_true());

    } else if (strncmp(spec, "http:", 5) == 0 && spec[5] == '/') {
        path = spec + 5;

        if ((size_t) (end - path) >= sizeof(val)) {
            ctl_error(err, CTL_EUSAGE, "invalid --check: the path is longer "
                      "than %d bytes", (int) sizeof(val) - 1);
            goto fail;
        }

        for (p = path; p < end; p++) {
            if (iscntrl((unsigned char) *p) || *p == ' ') {
                ctl_error(err, CTL_EUSAGE, "invalid --check \"%.64s\": the "
                          "path holds a space or a control character", spec);
                goto fail;
            }
        }

        json_object_set_new(j, "http",
                            json_stringn(path, (size_t) (end - path)));

    } else {
        ctl_error(err, CTL_EUSAGE, "invalid --check \"%.64s\": expected tcp "
                  "or http:/PATH, then ,interval=D,timeout=D,...", spec);
        goto fail;
    }

    for (p = end; *p == ','; p = end) {
        p++;
        end = p + strcspn(p, ",");
        eq = memchr(p, '=', (size_t) (end - p));

        klen = eq ? (size_t) (eq - p) : 0;
        vlen = eq ? (size_t) (end - eq - 1) : 0;

        if (eq == NULL || klen == 0 || klen >= sizeof(key) || vlen == 0
            || vlen >= sizeof(val))
        {
            ctl_error(err, CTL_EUSAGE, "invalid --check \"%.64s\": expected "
                      "KEY=VALUE after a comma", spec);
            goto fail;
        }

        snprintf(key, sizeof(key), "%.*s", (int) klen, p);
        snprintf(val, sizeof(val), "%.*s", (int) vlen, eq + 1);

        if (json_object_get(j, key) != NULL) {
            ctl_error(err, CTL_EUSAGE, "invalid --check: %s given twice",
                      key);
            goto fail;
        }

        if (strcmp(key, "interval") == 0 || strcmp(key, "timeout") == 0) {
            lo = key[0] == 'i' ? 100 : 10;
            ms = mesh_duration_parse(val);

            if (ms < lo || ms > 3600 * 1000) {
                ctl_error(err, CTL_EUSAGE, "invalid --check %s \"%.32s\": "
                          "must be a duration %s..1h", key, val,
                          key[0] == 'i' ? "100ms" : "10ms");
                goto fail;
            }

            json_object_set_new(j, key, json_string(val));

        } else if (strcmp(key, "healthy_threshold") == 0
                   || strcmp(key, "unhealthy_threshold") == 0)
        {
            if (ctl_parse_long(val, 1, 100, &n) != 0) {
                ctl_error(err, CTL_EUSAGE, "invalid --check %s \"%.32s\": "
                          "must be 1..100", key, val);
                goto fail;
            }

            json_object_set_new(j, key, json_integer(n));

        } else if (strcmp(key, "status") == 0) {
            if (json_object_get(j, "http") == NULL) {
                ctl_error(err, CTL_EUSAGE, "invalid --check: status is for "
                          "http checks");
                goto fail;
            }

            /* "200" or "200-399", 100..599 */
            p = strchr(val, '-');
            if (p) {
                val[p - val] = '\0';
            }

            if (ctl_parse_long(val, 100, 599, &lo) != 0
                || (p && ctl_parse_long(p + 1, 100, 599, &hi) != 0)
                || (p && hi < lo))
            {
                ctl_error(err, CTL_EUSAGE, "invalid --check status: "
                          "expected a status or a range, such as 200 or "
                          "200-399 (100..599)");
                goto fail;
            }

            if (p) {
                val[strlen(val)] = '-';
            }

            json_object_set_new(j, key, json_string(val));

        } else {
            ctl_error(err, CTL_EUSAGE, "invalid --check: unknown key "
                      "\"%.32s\" (interval, timeout, status, "
                      "healthy_threshold, unhealthy_threshold)", key);
            goto fail;
        }
    }

    *check = j;

    return 0;

fail:

    json_decref(j);

    return CTL_EUSAGE;
}


int
ctl_cmd_register(ctl_t *c, int argc, char **argv, char *err)
{
    int             rc, npos;
    int             port;
    char            addr[MESH_ADDR_LEN], path[512], *body;
    const char     *pos[3];
    json_t         *req, *res;
    ctl_resp_t      r;
    ctl_register_t  reg;

    memset(&reg, 0, sizeof(reg));

    req = json_object();
    reg.labels = json_object();

    rc = ctl_args(c, "register", argc, argv, ctl_register_options, ":",
                  ctl_register_take, &reg, pos, 3, &npos, err);
    if (rc < 0) {
        goto done;
    }

    if ((rc = ctl_check_args("register", npos, 3, 3, err)) != 0
        || (rc = ctl_register_body(&reg, pos, req, addr, sizeof(addr),
                                   &port, err)) != 0)
    {
        goto done;
    }

    body = json_dumps(req, JSON_COMPACT);

    snprintf(path, sizeof(path), "/v1/services/%s/instances/%s",
             pos[0], pos[1]);

    rc = ctl_call(c, "PUT", path, "application/json", body, strlen(body),
                  &r, &res, err);
    free(body);

    if (rc != 0) {
        goto done;
    }

    printf("%s %s/%s %s%s%s:%d", r.status == 201 ? "registered" : "updated",
           pos[0], pos[1], strchr(addr, ':') ? "[" : "", addr,
           strchr(addr, ':') ? "]" : "", port);
    ctl_print_index(res);

    json_decref(res);
    mesh_buf_free(&r.body);

done:

    json_decref(req);
    json_decref(reg.labels);

    return rc;
}
