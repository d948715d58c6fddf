/*
 * ctl_show: list and proxies: tables for people, JSON for scripts.
 */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"


/* tables */

#define CTL_COLS  8

typedef struct {
    int         ncols;
    size_t      width[CTL_COLS];
    size_t      nrows;
    char      **cells;          /* nrows * ncols, owned */
} ctl_table_t;


static void
ctl_table_add(ctl_table_t *t, const char **row)
{
    char   **p;
    int      k;

    p = mesh_xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    t->cells = p;
    p += t->nrows * t->ncols;

    for (k = 0; k < t->ncols; k++) {
        p[k] = mesh_xstrdup(row[k] ? row[k] : "");

        if (strlen(p[k]) > t->width[k]) {
            t->width[k] = strlen(p[k]);
        }
    }

    t->nrows++;
}


static void
ctl_table_print_free(ctl_table_t *t)
{
    size_t   i;
    int      k;
    char    *cell;

    for (i = 0; i < t->nrows; i++) {
        for (k = 0; k < t->ncols; k++) {
            cell = t->cells[i * t->ncols + k];

            if (k == t->ncols - 1) {
                printf("%s\n", cell);

            } else {
                printf("%-*s  ", (int) t->width[k], cell);
            }

            free(cell);
        }
    }

    free(t->cells);
    t->cells = NULL;
}


static const char *
ctl_str(json_t *o, const char *key, char *buf, size_t size)
{
    json_t  *v = json_object_get(o, key);

    if (json_is_string(v)) {
        return json_string_value(v)[0] ? json_string_value(v) : "-";
    }

    if (json_is_integer(v)) {
        snprintf(buf, size, "%lld", (long long) json_integer_value(v));
        return buf;
    }

    return "-";
}


static int
ctl_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


/* labels as "k=v,k=v", keys sorted */
static void
ctl_labels(json_t *labels, char *buf, size_t size)
{
    const char  *keys[64], *key;
    json_t      *v;
    size_t       n, i, len;

    buf[0] = '\0';
    n = 0;

    if (!json_is_object(labels)) {
        snprintf(buf, size, "-");
        return;
    }

    json_object_foreach(labels, key, v) {
        if (n < sizeof(keys) / sizeof(keys[0])) {
            keys[n++] = key;
        }
    }

    if (n == 0) {
        snprintf(buf, size, "-");
        return;
    }

    qsort(keys, n, sizeof(keys[0]), ctl_cmp_str);

    len = 0;
    for (i = 0; i < n && len < size; i++) {
        v = json_object_get(labels, keys[i]);
        len += snprintf(buf + len, size - len, "%s%s=%s", i ? "," : "",
                        keys[i], json_is_string(v) ? json_string_value(v) : "");
    }
}


/* --json: the answer's body as it came */
static void
ctl_print_body(ctl_resp_t *r)
{
    fputs(r->body.data, stdout);

    if (r->body.len == 0 || r->body.data[r->body.len - 1] != '\n') {
        fputc('\n', stdout);
    }
}


/* a table that will not be printed */
int
ctl_cmd_list(ctl_t *c, int argc, char **argv, char *err)
{
    int           rc, npos, set[1] = { 0 };
    char          path[512], n1[32], n2[32], n3[32], n4[32], n5[32];
    char          labels[1024];
    char          addr[INET6_ADDRSTRLEN + 2];
    const char   *pos[1], *flags[] = { "--json", NULL }, *row[CTL_COLS];
    size_t        i;
    json_t       *res, *arr, *e;
    ctl_resp_t    r;
    ctl_table_t   t;

    rc = ctl_simple_args(c, "list", argc, argv, pos, 1, &npos, flags, set,
                         err);
    if (rc != 0) {
        return rc;
    }

    if (npos == 1) {
        if ((rc = ctl_check_name("service name", pos[0], err)) != 0) {
            return rc;
        }

        snprintf(path, sizeof(path), "/v1/services/%s", pos[0]);

    } else {
        snprintf(path, sizeof(path), "/v1/services");
    }

    if (ctl_call(c, "GET", path, NULL, NULL, 0, &r, &res, err) != 0) {
        return -1;
    }

    if (set[0]) {
        ctl_print_body(&r);
        json_decref(res);
        mesh_buf_free(&r.body);
        return 0;
    }

    memset(&t, 0, sizeof(t));
    rc = 0;

    arr = json_object_get(res, npos ? "instances" : "services");
    if (!json_is_array(arr)) {
        rc = ctl_error(err, -1, "registry %s: unexpected answer to GET %s",
                       c->url, path);
        goto done;
    }

    if (npos == 0) {
        t.ncols = 3;
        row[0] = "NAME";
        row[1] = "INSTANCES";
        row[2] = "HEALTHY";

    } else {
        t.ncols = 7;
        row[0] = "ID";
        row[1] = "ADDRESS";
        row[2] = "PORT";
        row[3] = "WEIGHT";
        row[4] = "ZONE";
        row[5] = "HEALTH";
        row[6] = "LABELS";
    }

    ctl_table_add(&t, row);

    json_array_foreach(arr, i, e) {
        if (npos == 0) {
            row[0] = ctl_str(e, "name", n1, sizeof(n1));
            row[1] = ctl_str(e, "instances", n2, sizeof(n2));
            row[2] = ctl_str(e, "healthy", n3, sizeof(n3));

        } else {
            row[0] = ctl_str(e, "id", n1, sizeof(n1));
            row[1] = ctl_str(e, "address", addr, sizeof(addr));
            row[2] = ctl_str(e, "port", n2, sizeof(n2));
            row[3] = ctl_str(e, "weight", n3, sizeof(n3));
            row[4] = ctl_str(e, "zone", n4, sizeof(n4));
            row[5] = ctl_str(e, "health", n5, sizeof(n5));
            ctl_labels(json_object_get(e, "labels"), labels, sizeof(labels));
            row[6] = labels;
        }

        ctl_table_add(&t, row);
    }

    ctl_table_print_free(&t);

done:

    json_decref(res);
    mesh_buf_free(&r.body);

    return rc;
}


/* the nginx that poll the registry, as GET /v1/proxies lists them */
int
ctl_cmd_proxies(ctl_t *c, int argc, char **argv, char *err)
{
    int           rc, npos, set[1] = { 0 };
    char          n1[32], n2[32], seen[32];
    const char   *flags[] = { "--json", NULL }, *row[CTL_COLS], *ts;
    size_t        i;
    json_t       *res, *arr, *e, *lag;
    ctl_resp_t    r;
    ctl_table_t   t;

    rc = ctl_simple_args(c, "proxies", argc, argv, NULL, 0, &npos, flags,
                         set, err);
    if (rc != 0) {
        return rc;
    }

    if (ctl_call(c, "GET", "/v1/proxies", NULL, NULL, 0, &r, &res, err)
        != 0)
    {
        return -1;
    }

    if (set[0]) {
        ctl_print_body(&r);
        json_decref(res);
        mesh_buf_free(&r.body);
        return 0;
    }

    memset(&t, 0, sizeof(t));
    rc = 0;

    arr = json_object_get(res, "proxies");
    if (!json_is_array(arr)) {
        rc = ctl_error(err, -1, "registry %s: unexpected answer to GET "
                       "/v1/proxies", c->url);
        goto done;
    }

    t.ncols = 8;
    row[0] = "NAME";
    row[1] = "ADDRESS";
    row[2] = "STATE";
    row[3] = "INDEX";
    row[4] = "LAG";
    row[5] = "LAST SEEN";
    row[6] = "NGINX";
    row[7] = "MODULE";

    ctl_table_add(&t, row);

    json_array_foreach(arr, i, e) {
        row[0] = ctl_str(e, "name", NULL, 0);
        row[1] = ctl_str(e, "address", NULL, 0);
        row[2] = ctl_str(e, "state", NULL, 0);
        row[3] = ctl_str(e, "index", n1, sizeof(n1));

        lag = json_object_get(e, "lag");
        row[4] = json_is_integer(lag) ? ctl_str(e, "lag", n2, sizeof(n2))
                                      : "?";

        /* "2026-12-06T07:12:53.123Z": the time of day is enough */
        ts = ctl_str(e, "last_seen", NULL, 0);
        snprintf(seen, sizeof(seen), "%.8s", strlen(ts) > 11 ? ts + 11 : ts);
        row[5] = seen;

        row[6] = ctl_str(e, "nginx", NULL, 0);
        row[7] = ctl_str(e, "module", NULL, 0);

        ctl_table_add(&t, row);
    }

    ctl_table_print_free(&t);

done:

    json_decref(res);
    mesh_buf_free(&r.body);

    return rc;
}
