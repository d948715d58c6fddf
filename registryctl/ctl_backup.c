/*
 * ctl_backup: export and import, a registry's instances and policies as
 * one JSON document (registryd's GET /v1/export), sent again through the
 * ordinary API: to the same registry, another one, another store (SQLite
 * to etcd).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define CTL_EXPORT_FORMAT  "ngx-mesh-export/1"


int
ctl_cmd_export(ctl_t *c, int argc, char **argv, char *err)
{
    int         rc, npos;
    json_t     *res;
    ctl_resp_t  r;

    rc = ctl_simple_args(c, "export", argc, argv, NULL, 0, &npos, NULL,
                         NULL, err);
    if (rc != 0) {
        return rc;
    }

    if (ctl_call(c, "GET", "/v1/export", NULL, NULL, 0, &r, &res, err)
        != 0)
    {
        return -1;
    }

    if (!json_is_object(res)
        || !json_is_string(json_object_get(res, "format")))
    {
        json_decref(res);
        mesh_buf_free(&r.body);
        return ctl_error(err, -1, "registry %s: GET /v1/export is not an "
                         "export (registryd too old?)", c->url);
    }

    fwrite(r.body.data, 1, r.body.len, stdout);

    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


/* one instance of an export, registered again: 0, or -1 with why */
static int
ctl_import_instance(ctl_t *c, json_t *in, char *err)
{
    int          rc;
    char         path[512], *body;
    json_t      *req;
    ctl_resp_t   r;
    const char  *svc, *id;

    svc = json_string_value(json_object_get(in, "service"));
    id = json_string_value(json_object_get(in, "id"));

    if (svc == NULL || id == NULL) {
        return ctl_error(err, -1, "an instance without service or id");
    }

    if ((rc = ctl_check_name("service name", svc, err)) != 0
        || (rc = ctl_check_name("instance id", id, err)) != 0)
    {
        return -1;
    }

    /* as registered: its health starts over */
    req = json_deep_copy(in);
    json_object_del(req, "service");
    json_object_del(req, "id");
    json_object_del(req, "health");

    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);

    snprintf(path, sizeof(path), "/v1/services/%s/instances/%s", svc, id);

    rc = ctl_call(c, "PUT", path, "application/json", body, strlen(body),
                  &r, NULL, err);
    free(body);

    if (rc != 0) {
        return -1;
    }

    mesh_buf_free(&r.body);

    return 0;
}


static int
ctl_import_policy(ctl_t *c, json_t *pol, char *err)
{
    char         path[512];
    ctl_resp_t   r;
    const char  *name, *yaml;

    name = json_string_value(json_object_get(pol, "name"));
    yaml = json_string_value(json_object_get(pol, "yaml"));

    if (name == NULL || yaml == NULL) {
        return ctl_error(err, -1, "a policy without name or yaml");
    }

    if (ctl_check_name("policy name", name, err) != 0) {
        return -1;
    }

    snprintf(path, sizeof(path), "/v1/policies/%s", name);

    if (ctl_call(c, "PUT", path, "application/yaml", yaml, strlen(yaml), &r,
                 NULL, err)
        != 0)
    {
        return -1;
    }

    mesh_buf_free(&r.body);

    return 0;
}


int
ctl_cmd_import(ctl_t *c, int argc, char **argv, char *err)
{
    int           rc, npos, progress;
    char          e[CTL_ERR_LEN], first[CTL_ERR_LEN];
    size_t        i, n, ninst, failed, left;
    json_t       *doc, *list, *v, *res;
    mesh_buf_t    b = { NULL, 0, 0 };
    ctl_resp_t    r;
    const char   *pos[1], *format;
    json_error_t  jerr;
    unsigned char *done;

    rc = ctl_simple_args(c, "import", argc, argv, pos, 1, &npos, NULL, NULL,
                         err);
    if (rc != 0) {
        return rc;
    }

    if ((rc = ctl_check_args("import", npos, 1, 1, err)) != 0) {
        return rc;
    }

    if (ctl_read_file(pos[0], &b, err) != 0) {
        return -1;
    }

    doc = json_loadb(b.data, b.len, 0, &jerr);
    mesh_buf_free(&b);

    format = json_string_value(json_object_get(doc, "format"));

    if (doc == NULL || format == NULL
        || strcmp(format, CTL_EXPORT_FORMAT) != 0
        || !json_is_array(json_object_get(doc, "instances"))
        || !json_is_array(json_object_get(doc, "policies")))
    {
        json_decref(doc);
        return ctl_error(err, -1, "%s: not an export of registryctl export "
                         "(\"format\": \"" CTL_EXPORT_FORMAT "\")", pos[0]);
    }

    failed = 0;
    first[0] = '\0';

    list = json_object_get(doc, "instances");
    ninst = json_array_size(list);

    json_array_foreach(list, i, v) {
        if (ctl_import_instance(c, v, e) == 0) {
            continue;
        }

        if (failed++ == 0) {
            snprintf(first, sizeof(first), "%s", e);
        }
    }

    /*
     * Policies in passes: one that refers to another (a subset its
     * DestinationRule defines) goes in once that one is there.
     */

    list = json_object_get(doc, "policies");
    n = json_array_size(list);
    done = calloc(n ? n : 1, 1);
    left = n;

    if (done == NULL) {
        json_decref(doc);
        return ctl_error(err, -1, "out of memory");
    }

    do {
        progress = 0;

        json_array_foreach(list, i, v) {
            if (done[i]) {
                continue;
            }

            if (ctl_import_policy(c, v, e) == 0) {
                done[i] = 1;
                left--;
                progress = 1;
            }
        }

    } while (left && progress);

    if (left && first[0] == '\0') {
        snprintf(first, sizeof(first), "%s", e);
    }

    free(done);

    /* where it landed */
    res = NULL;

    if (ctl_call(c, "GET", "/healthz", NULL, NULL, 0, &r, &res, e) == 0) {
        mesh_buf_free(&r.body);
    }

    printf("imported %zu instances and %zu policies into %s",
           ninst - failed, n - left, c->url);
    ctl_print_index(res);

    json_decref(res);
    json_decref(doc);

    if (failed || left) {
        return ctl_error(err, -1, "%zu of %zu not imported, the first: %s",
                         failed + left, ninst + n, first);
    }

    return 0;
}
