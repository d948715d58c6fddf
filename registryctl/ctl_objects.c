/*
 * registryctl's objects, as kubectl knows them: apply -f, delete -f,
 * delete KIND NAME, get KIND [NAME] (registryd's /v1/objects). An object
 * is a DestinationRule, VirtualService or Gateway known by kind,
 * namespace and metadata.name; applying one replaces the object of the
 * same identity.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"


/* the kind as registryd's URL takes it, or NULL */
const char *
ctl_object_kind(const char *s)
{
    if (strcasecmp(s, "virtualservice") == 0
        || strcasecmp(s, "virtualservices") == 0
        || strcasecmp(s, "vs") == 0)
    {
        return "virtualservice";
    }

    if (strcasecmp(s, "destinationrule") == 0
        || strcasecmp(s, "destinationrules") == 0
        || strcasecmp(s, "dr") == 0)
    {
        return "destinationrule";
    }

    if (strcasecmp(s, "gateway") == 0
        || strcasecmp(s, "gateways") == 0
        || strcasecmp(s, "gw") == 0)
    {
        return "gateway";
    }

    return NULL;
}


/* "virtualservice default/reviews created" for each object */
static void
ctl_objects_print(json_t *res)
{
    size_t       i;
    json_t      *o, *objs, *idx;
    const char  *kind;

    objs = json_object_get(res, "objects");

    for (i = 0; i < json_array_size(objs); i++) {
        o = json_array_get(objs, i);
        kind = json_string_value(json_object_get(o, "kind"));

        printf("%s %s/%s %s", kind ? ctl_object_kind(kind) : "?",
               json_string_value(json_object_get(o, "namespace")),
               json_string_value(json_object_get(o, "name")),
               json_string_value(json_object_get(o, "result")));

        idx = json_object_get(o, "index");
        if (json_is_integer(idx)) {
            printf(" (index %lld)", (long long) json_integer_value(idx));
        }

        printf("\n");
    }
}


/* apply -f FILE or delete -f FILE: the file's objects to registryd */
int
ctl_objects_send(ctl_t *c, const char *file, int del, char *err)
{
    int          rc;
    json_t      *res;
    mesh_buf_t   b = { NULL, 0, 0 };
    ctl_resp_t   r;

    if (ctl_read_file(file, &b, err) != 0) {
        return -1;
    }

    rc = ctl_call(c, "POST", del ? "/v1/objects/delete" : "/v1/objects",
                  "application/yaml", b.data, b.len, &r, &res, err);
    mesh_buf_free(&b);

    if (rc != 0) {
        return -1;
    }

    ctl_objects_print(res);

    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


/* delete's and get's own options */
typedef struct {
    const char  *file;
    const char  *ns;
    const char  *output;
} ctl_objopt_t;


static const struct option  ctl_objopt_options[] = {
    { "file", required_argument, NULL, CTL_O_FILE },
    { "namespace", required_argument, NULL, CTL_O_NAMESPACE },
    { "output", required_argument, NULL, CTL_O_OUTPUT },
    { NULL, 0, NULL, 0 }
};


static int
ctl_objopt_take(void *ctx, int opt, const char *v, char *err)
{
    ctl_objopt_t  *o = ctx;

    (void) err;

    switch (opt) {

    case 'f':
    case CTL_O_FILE:
        o->file = v;
        return 1;

    case 'n':
    case CTL_O_NAMESPACE:
        o->ns = v;
        return 1;

    case 'o':
    case CTL_O_OUTPUT:
        o->output = v;
        return 1;
    }

    return 0;
}


int
ctl_cmd_delete(ctl_t *c, int argc, char **argv, char *err)
{
    int           rc, npos;
    char          path[512];
    json_t       *res;
    const char   *pos[2], *kind;
    ctl_resp_t    r;
    ctl_objopt_t  o = { NULL, NULL, NULL };

    rc = ctl_args(c, "delete", argc, argv, ctl_objopt_options, ":f:n:",
                  ctl_objopt_take, &o, pos, 2, &npos, err);
    if (rc < 0) {
        return rc;
    }

    if (o.file) {
        if (npos != 0 || o.ns) {
            return ctl_error(err, CTL_EUSAGE, "delete: -f FILE takes the "
                             "objects the file names, nothing else (usage: "
                             "registryctl %s)", ctl_usage_of("delete"));
        }

        return ctl_objects_send(c, o.file, 1, err);
    }

    if (npos != 2) {
        return ctl_error(err, CTL_EUSAGE, "delete: expected -f FILE or KIND "
                         "NAME (usage: registryctl %s)",
                         ctl_usage_of("delete"));
    }

    kind = ctl_object_kind(pos[0]);
    if (kind == NULL) {
        return ctl_error(err, CTL_EUSAGE, "delete: \"%.64s\" is not a kind: "
                         "virtualservice (vs), destinationrule (dr) or "
                         "gateway (gw)",
                         pos[0]);
    }

    if ((rc = ctl_check_name("name", pos[1], err)) != 0
        || (o.ns && (rc = ctl_check_name("namespace", o.ns, err)) != 0))
    {
        return rc;
    }

    snprintf(path, sizeof(path), "/v1/objects/%s/%s/%s", kind,
             o.ns ? o.ns : "default", pos[1]);

    if (ctl_call(c, "DELETE", path, NULL, NULL, 0, &r, &res, err) != 0) {
        return -1;
    }

    printf("%s %s/%s deleted", kind, o.ns ? o.ns : "default", pos[1]);
    ctl_print_index(res);

    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


/* the hosts of a listed object, joined by commas */
static void
ctl_object_hosts(json_t *o, char *out, size_t size)
{
    size_t   i, n = 0;
    json_t  *h = json_object_get(o, "hosts");

    out[0] = '\0';

    for (i = 0; i < json_array_size(h) && n + 1 < size; i++) {
        n += snprintf(out + n, size - n, "%s%s", i ? "," : "",
                      json_string_value(json_array_get(h, i)));
    }
}


/*
 * get KIND [NAME] [-n NS] [-o yaml|json]: a table of the objects of the
 * kind (every namespace without -n, as kubectl get -A), or one object.
 */
int
ctl_get_objects(ctl_t *c, int argc, char **argv, char *err)
{
    int           rc, npos, json, yaml;
    char          path[512], hosts[512], *out;
    size_t        i, n;
    json_t       *res, *objs, *o;
    const char   *pos[2], *kind, *ns;
    ctl_resp_t    r;
    ctl_objopt_t  opt = { NULL, NULL, NULL };

    rc = ctl_args(c, "get", argc, argv, ctl_objopt_options, ":n:o:",
                  ctl_objopt_take, &opt, pos, 2, &npos, err);
    if (rc < 0) {
        return rc;
    }

    kind = ctl_object_kind(pos[0]);

    if (opt.file) {
        return ctl_error(err, CTL_EUSAGE, "get: -f is not taken (usage: "
                         "registryctl %s)", ctl_usage_of("get"));
    }

    json = opt.output && strcmp(opt.output, "json") == 0;
    yaml = opt.output && strcmp(opt.output, "yaml") == 0;

    if (opt.output && !json && !yaml) {
        return ctl_error(err, CTL_EUSAGE, "get: -o \"%.32s\": expected yaml "
                         "or json", opt.output);
    }

    if (opt.ns && (rc = ctl_check_name("namespace", opt.ns, err)) != 0) {
        return rc;
    }

    if (npos == 2) {
        if ((rc = ctl_check_name("name", pos[1], err)) != 0) {
            return rc;
        }

        ns = opt.ns ? opt.ns : "default";
        snprintf(path, sizeof(path), "/v1/objects/%s/%s/%s", kind, ns,
                 pos[1]);

        if (ctl_call(c, "GET", path, NULL, NULL, 0, &r, &res, err) != 0) {
            return -1;
        }

        if (json) {
            out = json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("%s\n", out ? out : "");
            free(out);

        } else {
            /* the YAML as applied (-o yaml, or no -o) */
            out = (char *) json_string_value(json_object_get(res, "yaml"));
            n = out ? strlen(out) : 0;
            fputs(out ? out : "", stdout);
            if (n == 0 || out[n - 1] != '\n') {
                fputc('\n', stdout);
            }
        }

        json_decref(res);
        mesh_buf_free(&r.body);
        return 0;
    }

    if (yaml) {
        return ctl_error(err, CTL_EUSAGE, "get: -o yaml needs a NAME");
    }

    snprintf(path, sizeof(path), "/v1/objects?kind=%s", kind);

    if (ctl_call(c, "GET", path, NULL, NULL, 0, &r, &res, err) != 0) {
        return -1;
    }

    objs = json_object_get(res, "objects");

    if (json) {
        out = json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", out ? out : "");
        free(out);

    } else {
        printf("%-16s %-32s %-32s %s\n", "NAMESPACE", "NAME", "HOSTS",
               "POLICY");

        for (i = 0, n = 0; i < json_array_size(objs); i++) {
            o = json_array_get(objs, i);
            ns = json_string_value(json_object_get(o, "namespace"));

            if (opt.ns && (ns == NULL || strcmp(ns, opt.ns) != 0)) {
                continue;
            }

            ctl_object_hosts(o, hosts, sizeof(hosts));
            printf("%-16s %-32s %-32s %s\n", ns,
                   json_string_value(json_object_get(o, "name")), hosts,
                   json_string_value(json_object_get(o, "policy")));
            n++;
        }
    }

    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}
