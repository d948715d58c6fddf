/*
 * rd_policy_delegate: VirtualService delegation, as Istio merges it.
 *
 * A VirtualService without hosts is a delegate: it routes nothing by
 * itself, only through a root's http[] item that names it in
 * "delegate". The snapshot carries the root with each such item
 * replaced by the delegate's routes, merged with it (below), and
 * carries no delegate: a module reads ordinary routes, older ones too.
 * The merged form is made when the root or one of its delegates
 * changes, for the roots that change touches (the table's write lock
 * held), never when a snapshot is written.
 *
 * The merge is Istio's (pilot's mergeHTTPRoutes): each route of the
 * delegate becomes a route of the root, in the delegate's order, in
 * place of the root's item. Its match is the conjunction of both: a
 * delegate route without match takes the root's; otherwise every item
 * of the delegate's match is merged with each item of the root's it
 * does not conflict with (its uri within the root's, the same header
 * and label values where both name one, the same ignoreUriCase), and a
 * delegate route with an item that fits none of the root's is left out
 * (Istio leaves it out, with a warning). The root item's name,
 * timeout, retries, fault, rewrite, headers and corsPolicy go to each
 * route that has none of its own. A delegate that is not stored leaves
 * the root's item out: its requests go on to the root's next routes
 * (and are answered 404 when none fits), as Istio does.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "rd_policy_int.h"


/* the delegate NS/NAME: the policy holding it and its object, looked for
 * in p first, then in v (skipping the policy named like p) */
static const rd_policy_t *
rd_find_delegate(const rd_policy_t *p, rd_policy_t *const *v, size_t n,
    const char *ns, const char *name, int *obj)
{
    size_t              i, k;
    const rd_policy_t  *q;

    for (i = 0; i <= n; i++) {
        q = (i == 0) ? p : v[i - 1];

        if (q == NULL || (i > 0 && p && strcmp(q->name, p->name) == 0)) {
            continue;
        }

        for (k = 0; k < q->nobjs; k++) {
            if (q->objs[k].delegate && strcmp(q->objs[k].ns, ns) == 0
                && strcmp(q->objs[k].name, name) == 0)
            {
                *obj = (int) k;
                return q;
            }
        }
    }

    return NULL;
}


/* merging */

/* a delegate's StringMatch conflicts with the root's: it is not within
 * it (Istio: a regex on either side conflicts, an exact must be equal, a
 * prefix must start the other's prefix or exact value) */
static int
rd_sm_conflict(json_t *root, json_t *leaf)
{
    json_t      *x;
    const char  *s, *pre;

    if (root == NULL || leaf == NULL) {
        return 0;
    }

    if ((x = json_object_get(root, "exact")) != NULL) {
        s = json_string_value(json_object_get(leaf, "exact"));
        return s == NULL || strcmp(s, json_string_value(x)) != 0;
    }

    if ((x = json_object_get(root, "prefix")) != NULL) {
        pre = json_string_value(x);
        s = json_string_value(json_object_get(leaf, "prefix"));
        if (s == NULL) {
            s = json_string_value(json_object_get(leaf, "exact"));
        }

        return s == NULL || strncmp(s, pre, strlen(pre)) != 0;
    }

    return 1;
}


static int
rd_match_conflict(json_t *root, json_t *leaf)
{
    json_t      *lh, *rh, *ll, *rl, *v;
    const char  *key;

    if (rd_sm_conflict(json_object_get(root, "uri"),
                       json_object_get(leaf, "uri")))
    {
        return 1;
    }

    lh = json_object_get(leaf, "headers");
    rh = json_object_get(root, "headers");

    json_object_foreach(lh, key, v) {
        if (rd_sm_conflict(json_object_get(rh, key), v)) {
            return 1;
        }
    }

    if ((json_object_get(root, "ignoreUriCase") != NULL)
        != (json_object_get(leaf, "ignoreUriCase") != NULL))
    {
        return 1;
    }

    ll = json_object_get(leaf, "sourceLabels");
    rl = json_object_get(root, "sourceLabels");

    json_object_foreach(ll, key, v) {
        if (json_object_get(rl, key) != NULL
            && !json_equal(json_object_get(rl, key), v))
        {
            return 1;
        }
    }

    return 0;
}


/* the delegate's item with what the root's adds: its uri when the
 * delegate has none, the union of headers and of labels (the
 * delegate's value where both name one: the same, no conflict) */
static json_t *
rd_match_merge(json_t *root, json_t *leaf)
{
    json_t      *out, *u, *from, *to, *v;
    const char  *key, *maps[] = { "headers", "sourceLabels" };
    size_t       i;

    out = json_deep_copy(leaf);

    if (json_object_get(out, "uri") == NULL
        && (u = json_object_get(root, "uri")) != NULL)
    {
        rd_jset(out, "uri", json_deep_copy(u));
    }

    for (i = 0; i < 2; i++) {
        from = json_object_get(root, maps[i]);
        if (from == NULL) {
            continue;
        }

        to = json_object_get(out, maps[i]);
        if (to == NULL) {
            to = rd_jobj();
            rd_jset(out, maps[i], to);
        }

        json_object_foreach(from, key, v) {
            if (json_object_get(to, key) == NULL) {
                rd_jset(to, key, json_deep_copy(v));
            }
        }
    }

    return out;
}


/* the merged match, or NULL when the route conflicts with the root's */
static json_t *
rd_matches_merge(json_t *root, json_t *leaf)
{
    int      fit;
    size_t   i, j;
    json_t  *out;

    if (json_array_size(root) == 0) {
        return json_deep_copy(leaf);
    }

    if (json_array_size(leaf) == 0) {
        return json_deep_copy(root);
    }

    out = rd_jarr();

    for (i = 0; i < json_array_size(leaf); i++) {
        fit = 0;

        for (j = 0; j < json_array_size(root); j++) {
            if (rd_match_conflict(json_array_get(root, j),
                                  json_array_get(leaf, i)))
            {
                continue;
            }

            rd_jpush(out, rd_match_merge(json_array_get(root, j),
                                         json_array_get(leaf, i)));
            fit = 1;
        }

        if (!fit) {
            json_decref(out);
            return NULL;
        }
    }

    return out;
}


/* one route of the delegate merged with the root's item, or NULL */
static json_t *
rd_route_merge(json_t *root, json_t *leaf)
{
    int          answered;
    char        *name;
    size_t       i, len;
    json_t      *out, *match, *v;
    const char  *key, *rn, *ln;

    static const char  *inherited[] = {
        "timeoutMs", "retries", "headers", "corsPolicy", "fault", "rewrite"
    };

    match = rd_matches_merge(json_object_get(root, "match"),
                             json_object_get(leaf, "match"));
    if (match == NULL) {
        return NULL;
    }

    out = rd_jobj();

    rn = json_string_value(json_object_get(root, "name"));
    ln = json_string_value(json_object_get(leaf, "name"));

    if (rn && ln) {
        len = strlen(rn) + strlen(ln) + 2;
        name = mesh_xmalloc(len);
        snprintf(name, len, "%s-%s", rn, ln);
        rd_jset(out, "name", json_string(name));
        free(name);

    } else if (rn || ln) {
        rd_jset(out, "name", json_string(rn ? rn : ln));
    }

    rd_jset(out, "match", match);

    json_object_foreach(leaf, key, v) {
        if (strcmp(key, "name") != 0 && strcmp(key, "match") != 0) {
            rd_jset(out, key, json_deep_copy(v));
        }
    }

    /* a route answered by nginx has no destination to fail or rewrite
     * for: it takes neither from the root */
    answered = (json_object_get(leaf, "redirect") != NULL
                || json_object_get(leaf, "directResponse") != NULL);

    for (i = 0; i < sizeof(inherited) / sizeof(inherited[0]); i++) {
        if (answered && (strcmp(inherited[i], "fault") == 0
                         || strcmp(inherited[i], "rewrite") == 0))
        {
            continue;
        }

        v = json_object_get(root, inherited[i]);

        if (v && json_object_get(out, inherited[i]) == NULL) {
            rd_jset(out, inherited[i], json_deep_copy(v));
        }
    }

    return out;
}


/* a root document with its delegates' routes in place of its items */
static json_t *
rd_expand_doc(json_t *doc, const rd_policy_t *p, rd_policy_t *const *v,
    size_t n)
{
    int                 k;
    size_t              i, j;
    json_t             *out, *http, *h, *dl, *dh, *m;
    const rd_policy_t  *d;

    out = json_copy(doc);
    http = rd_jarr();

    json_array_foreach(json_object_get(doc, "http"), i, h) {
        dl = json_object_get(h, "delegate");

        if (dl == NULL) {
            rd_jpush(http, json_incref(h));
            continue;
        }

        d = rd_find_delegate(p, v, n,
                             json_string_value(json_object_get(dl,
                                                               "namespace")),
                             json_string_value(json_object_get(dl, "name")),
                             &k);
        if (d == NULL) {
            continue;       /* not stored: the item routes nothing */
        }

        json_array_foreach(json_object_get(json_array_get(d->docs,
                                                          (size_t) k),
                                           "http"),
                           j, dh)
        {
            m = rd_route_merge(h, dh);
            if (m) {
                rd_jpush(http, m);
            }
        }
    }

    rd_jset(out, "http", http);

    return out;
}


static int
rd_is_root(json_t *doc)
{
    size_t   i;
    json_t  *h;

    json_array_foreach(json_object_get(doc, "http"), i, h) {
        if (json_object_get(h, "delegate") != NULL) {
            return 1;
        }
    }

    return 0;
}


/* p's snapshot form made again */
static void
rd_policy_expand(rd_policy_t *p, rd_policy_t *const *v, size_t n)
{
    char        *s;
    size_t       i;
    json_t      *doc, *x;
    mesh_buf_t   b;

    mesh_buf_init(&b, p->snap_len + 256);

    for (i = 0; i < json_array_size(p->docs); i++) {
        if (i < p->nobjs && p->objs[i].delegate) {
            continue;       /* routes only through its roots */
        }

        doc = json_array_get(p->docs, i);

        if (rd_is_root(doc)) {
            x = rd_expand_doc(doc, p, v, n);
            s = json_dumps(x, JSON_COMPACT);
            json_decref(x);

        } else {
            s = json_dumps(doc, JSON_COMPACT);
        }

        if (b.len) {
            mesh_buf_adds(&b, ",\n");
        }
        mesh_buf_adds(&b, s);
        free(s);
    }

    mesh_buf_cstr(&b);
    free(p->xsnap);
    p->xsnap = b.data;
    p->xsnap_len = b.len;
}


/* does root r name one of the delegates of q? */
static int
rd_names_delegate_of(const rd_policy_t *r, const rd_policy_t *q)
{
    size_t  i, k;

    if (q == NULL) {
        return 0;
    }

    for (i = 0; i < r->ndelegates; i++) {
        for (k = 0; k < q->nobjs; k++) {
            if (q->objs[k].delegate
                && strcmp(r->delegates[i].host, q->objs[k].ns) == 0
                && strcmp(r->delegates[i].subset, q->objs[k].name) == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


void
rd_policy_delegation_changed(rd_policy_t *const *v, size_t n,
    const char *name, const rd_policy_t *old)
{
    size_t        i;
    rd_policy_t  *p, *q;

    p = NULL;

    for (i = 0; i < n; i++) {
        if (strcmp(v[i]->name, name) == 0) {
            p = v[i];
            break;
        }
    }

    if (p && p->delegation) {
        rd_policy_expand(p, v, n);
    }

    for (i = 0; i < n; i++) {
        q = v[i];

        if (q == p || q->ndelegates == 0) {
            continue;
        }

        if (rd_names_delegate_of(q, p) || rd_names_delegate_of(q, old)) {
            rd_policy_expand(q, v, n);
        }
    }
}


const char *
rd_policy_snap(const rd_policy_t *p, size_t *len)
{
    if (!p->delegation) {
        *len = p->snap_len;
        return p->snap;
    }

    *len = p->xsnap ? p->xsnap_len : 0;

    return p->xsnap ? p->xsnap : "";
}
