/*
 * rd_auth: the tokens and their scopes, read from a tokens file
 *
 *     anonymous_read: false
 *     tokens:
 *       - name: nginx
 *         secret: "..."
 *         scopes: [read]
 *       - name: deploy-orders
 *         secret: "..."
 *         scopes: [read, "write:orders", "write:orders-*"]
 *       - name: ops
 *         subject: "CN=ops.example.internal"
 *         scopes: [admin]
 *
 * or from token_file (one token, every scope), and the decision for one
 * request. The set is immutable once read; a reload builds a new one and
 * swaps the pointer under the lock the decisions take.
 */

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "mesh_alloc.h"
#include "mesh_name.h"
#include "mesh_token.h"
#include "rd_auth.h"
#include "rd_util.h"

#define RD_SC_READ      1
#define RD_SC_POLICIES  2
#define RD_SC_ADMIN     4

#define RD_AUTH_PATTERN_MAX  128

typedef struct {
    char                name[RD_AUTH_NAME_MAX + 1];
    char               *secret;      /* NULL: by certificate only */
    char               *subject;     /* NULL: by secret only */
    unsigned            scopes;      /* RD_SC_* */
    char              **write;       /* service patterns (fnmatch) */
    size_t              nwrite;
} rd_auth_token_t;

typedef struct {
    rd_auth_token_t    *tokens;
    size_t              n;
    int                 anonymous_read;
} rd_auth_set_t;

struct rd_auth_s {
    pthread_mutex_t     lock;
    rd_auth_set_t      *set;         /* NULL: no token, protected mode */
    char               *path;        /* NULL: nothing to read */
    int                 multi;       /* tokens_file, not token_file */
};

/* what a tokens file is read with */
typedef struct {
    yaml_document_t    *doc;
    const char         *path;
    char               *err;
} rd_auth_ctx_t;


static void
rd_auth_set_free(rd_auth_set_t *set)
{
    size_t            i, j;
    rd_auth_token_t  *t;

    if (set == NULL) {
        return;
    }

    for (i = 0; i < set->n; i++) {
        t = &set->tokens[i];

        if (t->secret) {
            /* the secret does not outlive its use in freed memory */
            memset(t->secret, 0, strlen(t->secret));
            free(t->secret);
        }

        free(t->subject);

        for (j = 0; j < t->nwrite; j++) {
            free(t->write[j]);
        }

        free(t->write);
    }

    free(set->tokens);
    free(set);
}


/* a secret others on the machine can read is no secret */
static int
rd_auth_private(const char *path, const char *what, char *err)
{
    struct stat  st;

    if (stat(path, &st) != 0) {
        return 0;               /* the reading says why */
    }

    if (st.st_mode & 077) {
        snprintf(err, RD_ERR_LEN, "%s %s can be read or written by group "
                 "or others (mode %04o): chmod 600 it", what, path,
                 (unsigned int) (st.st_mode & 07777));
        return -1;
    }

    return 0;
}


static int
rd_auth_fail(rd_auth_ctx_t *c, yaml_node_t *n, const char *fmt,
    const char *arg)
{
    char  msg[RD_ERR_LEN];

    snprintf(msg, sizeof(msg), fmt, arg ? arg : "");
    snprintf(c->err, RD_ERR_LEN, "%s:%lu: %s", c->path,
             (unsigned long) (n ? n->start_mark.line + 1 : 1), msg);

    return -1;
}


static const char *
rd_auth_scalar(yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE
           ? (const char *) n->data.scalar.value : NULL;
}


static int
rd_auth_bool(rd_auth_ctx_t *c, yaml_node_t *n, int *out)
{
    const char  *v = rd_auth_scalar(n);

    if (v && strcmp(v, "true") == 0) {
        *out = 1;
        return 0;
    }

    if (v && strcmp(v, "false") == 0) {
        *out = 0;
        return 0;
    }

    return rd_auth_fail(c, n, "anonymous_read must be true or false%s",
                        NULL);
}


static int
rd_auth_pattern_ok(const char *p)
{
    size_t  n = 0;

    for ( /* void */ ; *p; p++, n++) {
        if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '_'
              || *p == '-' || *p == '*' || *p == '?'))
        {
            return 0;
        }
    }

    return n > 0 && n <= RD_AUTH_PATTERN_MAX;
}


static int
rd_auth_scope(rd_auth_ctx_t *c, yaml_node_t *n, rd_auth_token_t *t)
{
    const char  *v = rd_auth_scalar(n);

    if (v == NULL) {
        return rd_auth_fail(c, n, "a scope is a string%s", NULL);
    }

    if (strcmp(v, "read") == 0) {
        t->scopes |= RD_SC_READ;

    } else if (strcmp(v, "policies") == 0) {
        t->scopes |= RD_SC_POLICIES;

    } else if (strcmp(v, "admin") == 0) {
        t->scopes |= RD_SC_ADMIN;

    } else if (strncmp(v, "write:", 6) == 0) {
        if (!rd_auth_pattern_ok(v + 6)) {
            return rd_auth_fail(c, n, "scope \"%.140s\": write: takes a "
                                "service name or a pattern of name "
                                "characters, * and ?", v);
        }

        t->write = mesh_xrealloc(t->write,
                                 (t->nwrite + 1) * sizeof(char *));
        t->write[t->nwrite++] = mesh_xstrdup(v + 6);

    } else if (strcmp(v, "write") == 0) {
        return rd_auth_fail(c, n, "scope \"write\" needs the services it "
                            "may write: write:orders, write:orders-* or "
                            "write:*%s", NULL);

    } else {
        return rd_auth_fail(c, n, "unknown scope \"%.64s\": scopes are "
                            "read, write:SERVICE-PATTERN, policies, admin",
                            v);
    }

    return 0;
}


static int
rd_auth_string(rd_auth_ctx_t *c, yaml_node_t *n, const char *key,
    char **out)
{
    const char  *v = rd_auth_scalar(n);
    const char  *p;

    if (v == NULL || *v == '\0') {
        return rd_auth_fail(c, n, "%s must be a non-empty string", key);
    }

    for (p = v; *p; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            return rd_auth_fail(c, n, "%s has a control character", key);
        }
    }

    if (*out) {
        return rd_auth_fail(c, n, "%s is given twice", key);
    }

    *out = mesh_xstrdup(v);
    return 0;
}


static int
rd_auth_token(rd_auth_ctx_t *c, yaml_node_t *n, rd_auth_token_t *t)
{
    char              *name = NULL;
    const char        *k;
    yaml_node_t       *kn, *vn, *sn;
    yaml_node_pair_t  *p;
    yaml_node_item_t  *it;

    if (n->type != YAML_MAPPING_NODE) {
        return rd_auth_fail(c, n, "a token is a mapping of name, secret or "
                            "subject, and scopes%s", NULL);
    }

    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
         p++)
    {
        kn = yaml_document_get_node(c->doc, p->key);
        vn = yaml_document_get_node(c->doc, p->value);
        k = rd_auth_scalar(kn);

        if (k && strcmp(k, "name") == 0) {
            if (rd_auth_string(c, vn, "name", &name) != 0) {
                goto failed;
            }

            if (strlen(name) > RD_AUTH_NAME_MAX
                || !mesh_name_valid(name, strlen(name)))
            {
                rd_auth_fail(c, vn, "name \"%.80s\": names are "
                             "[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name);
                goto failed;
            }

            snprintf(t->name, sizeof(t->name), "%s", name);

        } else if (k && strcmp(k, "secret") == 0) {
            if (rd_auth_string(c, vn, "secret", &t->secret) != 0) {
                goto failed;
            }

            if (strlen(t->secret) < RD_AUTH_SECRET_MIN
                || strlen(t->secret) > MESH_TOKEN_MAX)
            {
                rd_auth_fail(c, vn, "a secret has 16 to 4096 characters "
                             "(openssl rand -hex 32 makes one)%s", NULL);
                goto failed;
            }

        } else if (k && strcmp(k, "subject") == 0) {
            if (rd_auth_string(c, vn, "subject", &t->subject) != 0) {
                goto failed;
            }

            if (strlen(t->subject) > RD_AUTH_SUBJECT_MAX) {
                rd_auth_fail(c, vn, "a subject has at most "
                             RD_AUTH_SUBJECT_MAX_TEXT " characters%s",
                             NULL);
                goto failed;
            }

        } else if (k && strcmp(k, "scopes") == 0) {
            if (vn->type != YAML_SEQUENCE_NODE) {
                rd_auth_fail(c, vn, "scopes is a list, e.g. [read]%s",
                             NULL);
                goto failed;
            }

            for (it = vn->data.sequence.items.start;
                 it < vn->data.sequence.items.top; it++)
            {
                sn = yaml_document_get_node(c->doc, *it);

                if (rd_auth_scope(c, sn, t) != 0) {
                    goto failed;
                }
            }

        } else {
            rd_auth_fail(c, kn, "unknown key \"%.64s\" in a token: keys are "
                         "name, secret, subject, scopes", k ? k : "?");
            goto failed;
        }
    }

    if (name == NULL) {
        rd_auth_fail(c, n, "a token needs a name%s", NULL);
        goto failed;
    }

    if (t->secret == NULL && t->subject == NULL) {
        rd_auth_fail(c, n, "token \"%s\" needs a secret or a subject",
                     t->name);
        goto failed;
    }

    if (t->scopes == 0 && t->nwrite == 0) {
        rd_auth_fail(c, n, "token \"%s\" has no scopes", t->name);
        goto failed;
    }

    free(name);
    return 0;

failed:

    free(name);
    return -1;
}


/* two tokens one credential could stand for: which one is it? */
static int
rd_auth_unique(rd_auth_ctx_t *c, yaml_node_t *n, rd_auth_set_t *set)
{
    size_t            i;
    rd_auth_token_t  *a, *b;

    b = &set->tokens[set->n - 1];

    for (i = 0; i + 1 < set->n; i++) {
        a = &set->tokens[i];

        if (strcmp(a->name, b->name) == 0) {
            return rd_auth_fail(c, n, "token name \"%s\" is used twice",
                                b->name);
        }

        if (a->secret && b->secret && strcmp(a->secret, b->secret) == 0) {
            return rd_auth_fail(c, n, "token \"%s\" has the secret of "
                                "another token", b->name);
        }

        if (a->subject && b->subject && strcmp(a->subject, b->subject) == 0)
        {
            return rd_auth_fail(c, n, "token \"%s\" has the subject of "
                                "another token", b->name);
        }
    }

    return 0;
}


static rd_auth_set_t *
rd_auth_read_tokens(const char *path, char *err)
{
    int               rc = -1;
    FILE             *f;
    const char       *k;
    yaml_node_t      *root, *kn, *vn, *tn;
    rd_auth_ctx_t     c;
    rd_auth_set_t    *set;
    yaml_parser_t     parser;
    yaml_document_t   doc;
    yaml_node_pair_t *p;
    yaml_node_item_t *it;

    if (rd_auth_private(path, "tokens file", err) != 0) {
        return NULL;
    }

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, RD_ERR_LEN, "cannot open tokens file %s: %s", path,
                 strerror(errno));
        return NULL;
    }

    set = mesh_xcalloc(1, sizeof(rd_auth_set_t));

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);

    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, RD_ERR_LEN, "%s:%lu: %s", path,
                 (unsigned long) parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "not YAML");
        yaml_parser_delete(&parser);
        fclose(f);
        rd_auth_set_free(set);
        return NULL;
    }

    c.doc = &doc;
    c.path = path;
    c.err = err;

    root = yaml_document_get_root_node(&doc);

    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        rd_auth_fail(&c, root, "a tokens file is a mapping of "
                     "anonymous_read and tokens%s", NULL);
        goto done;
    }

    for (p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++)
    {
        kn = yaml_document_get_node(&doc, p->key);
        vn = yaml_document_get_node(&doc, p->value);
        k = rd_auth_scalar(kn);

        if (k && strcmp(k, "anonymous_read") == 0) {
            if (rd_auth_bool(&c, vn, &set->anonymous_read) != 0) {
                goto done;
            }

            continue;
        }

        if (k == NULL || strcmp(k, "tokens") != 0) {
            rd_auth_fail(&c, kn, "unknown key \"%.64s\": a tokens file has "
                         "anonymous_read and tokens", k ? k : "?");
            goto done;
        }

        if (vn->type != YAML_SEQUENCE_NODE) {
            rd_auth_fail(&c, vn, "tokens is a list of tokens%s", NULL);
            goto done;
        }

        for (it = vn->data.sequence.items.start;
             it < vn->data.sequence.items.top; it++)
        {
            tn = yaml_document_get_node(&doc, *it);

            set->tokens = mesh_xrealloc(set->tokens, (set->n + 1)
                                                     * sizeof(rd_auth_token_t));
            memset(&set->tokens[set->n], 0, sizeof(rd_auth_token_t));
            set->n++;

            if (rd_auth_token(&c, tn, &set->tokens[set->n - 1]) != 0
                || rd_auth_unique(&c, tn, set) != 0)
            {
                goto done;
            }
        }
    }

    rc = 0;

done:

    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);

    if (rc != 0) {
        rd_auth_set_free(set);
        return NULL;
    }

    return set;
}


/* token_file: one token with every scope */
static rd_auth_set_t *
rd_auth_read_token(const char *path, char *err)
{
    char            tok[MESH_TOKEN_MAX + 1];
    rd_auth_set_t  *set;

    if (rd_auth_private(path, "token file", err) != 0
        || mesh_token_read(path, tok, sizeof(tok), err, RD_ERR_LEN) != 0)
    {
        return NULL;
    }

    set = mesh_xcalloc(1, sizeof(rd_auth_set_t));
    set->tokens = mesh_xcalloc(1, sizeof(rd_auth_token_t));
    set->n = 1;

    snprintf(set->tokens[0].name, sizeof(set->tokens[0].name),
             "token_file");
    set->tokens[0].secret = mesh_xstrdup(tok);
    set->tokens[0].scopes = RD_SC_ADMIN;

    memset(tok, 0, sizeof(tok));

    return set;
}


static rd_auth_set_t *
rd_auth_read(rd_auth_t *auth, char *err)
{
    return auth->multi ? rd_auth_read_tokens(auth->path, err)
                       : rd_auth_read_token(auth->path, err);
}


rd_auth_t *
rd_auth_create(const rd_conf_t *conf, char *err)
{
    rd_auth_t  *auth;

    if (conf->token_file && conf->tokens_file) {
        snprintf(err, RD_ERR_LEN, "token_file and tokens_file are both "
                 "set: a tokens file holds every token, token_file only "
                 "one (with every scope); set one of them");
        return NULL;
    }

    auth = mesh_xcalloc(1, sizeof(rd_auth_t));
    pthread_mutex_init(&auth->lock, NULL);

    if (conf->tokens_file || conf->token_file) {
        auth->multi = conf->tokens_file != NULL;
        auth->path = mesh_xstrdup(auth->multi ? conf->tokens_file
                                              : conf->token_file);

        auth->set = rd_auth_read(auth, err);
        if (auth->set == NULL) {
            rd_auth_free(auth);
            return NULL;
        }
    }

    return auth;
}


void
rd_auth_free(rd_auth_t *auth)
{
    if (auth == NULL) {
        return;
    }

    rd_auth_set_free(auth->set);
    pthread_mutex_destroy(&auth->lock);
    free(auth->path);
    free(auth);
}


int
rd_auth_reload(rd_auth_t *auth, size_t *ntokens, char *err)
{
    rd_auth_set_t  *set, *old;

    *ntokens = rd_auth_count(auth);

    if (auth->path == NULL) {
        return 0;
    }

    set = rd_auth_read(auth, err);
    if (set == NULL) {
        return -1;
    }

    pthread_mutex_lock(&auth->lock);
    old = auth->set;
    auth->set = set;
    pthread_mutex_unlock(&auth->lock);

    rd_auth_set_free(old);

    *ntokens = set->n;
    return 0;
}


size_t
rd_auth_count(rd_auth_t *auth)
{
    size_t  n;

    pthread_mutex_lock(&auth->lock);
    n = auth->set ? auth->set->n : 0;
    pthread_mutex_unlock(&auth->lock);

    return n;
}


/* "read, write:orders-*" for a refusal */
static void
rd_auth_scopes_text(const rd_auth_token_t *t, char *buf, size_t size)
{
    size_t  i, n = 0;

    buf[0] = '\0';

#define RD_AUTH_ADD(s)                                                     \
    if (n < size) {                                                        \
        n += (size_t) snprintf(buf + n, size - n, "%s%s", n ? ", " : "",   \
                               s);                                         \
    }

    if (t->scopes & RD_SC_READ) {
        RD_AUTH_ADD("read");
    }

    for (i = 0; i < t->nwrite; i++) {
        char  w[RD_AUTH_PATTERN_MAX + 7];

        snprintf(w, sizeof(w), "write:%s", t->write[i]);
        RD_AUTH_ADD(w);
    }

    if (t->scopes & RD_SC_POLICIES) {
        RD_AUTH_ADD("policies");
    }

#undef RD_AUTH_ADD
}


static int
rd_auth_has(const rd_auth_token_t *t, rd_need_e need, const char *svc)
{
    size_t  i;

    if (t->scopes & RD_SC_ADMIN) {
        return 1;
    }

    switch (need) {

    case RD_NEED_READ:
        return (t->scopes & RD_SC_READ) != 0;

    case RD_NEED_POLICIES:
        return (t->scopes & RD_SC_POLICIES) != 0;

    case RD_NEED_WRITE:
        for (i = 0; i < t->nwrite; i++) {
            if (fnmatch(t->write[i], svc, 0) == 0) {
                return 1;
            }
        }

        return 0;

    default:
        return 0;
    }
}


rd_auth_e
rd_auth_check(rd_auth_t *auth, const char *bearer, const char *subject,
    rd_need_e need, const char *svc, char *who, char *reason)
{
    char              has[256], scope[RD_AUTH_PATTERN_MAX + 16];
    size_t            i;
    rd_auth_e         rc;
    rd_auth_set_t    *set;
    rd_auth_token_t  *t, *found;

    who[0] = '\0';
    found = NULL;

    pthread_mutex_lock(&auth->lock);

    set = auth->set;

    if (set == NULL || set->n == 0) {
        rc = RD_AUTH_OPEN;
        goto done;
    }

    if (bearer) {
        /* every secret is compared, in constant time each: the time
         * taken says nothing about which one nearly matched */
        for (i = 0; i < set->n; i++) {
            t = &set->tokens[i];

            if (t->secret && rd_secure_equal(bearer, t->secret)
                && found == NULL)
            {
                found = t;
            }
        }

        if (found == NULL) {
            snprintf(reason, RD_ERR_LEN, "wrong bearer token");
            rc = RD_AUTH_UNAUTHENTICATED;
            goto done;
        }

    } else if (subject) {
        for (i = 0; i < set->n; i++) {
            t = &set->tokens[i];

            if (t->subject && strcmp(subject, t->subject) == 0) {
                found = t;
                break;
            }
        }
    }

    if (found == NULL) {
        if (need == RD_NEED_READ && set->anonymous_read) {
            rc = RD_AUTH_ALLOW;
            goto done;
        }

        if (subject) {
            snprintf(reason, RD_ERR_LEN, "the client certificate \"%.80s\" "
                     "stands for no token, and no bearer token was sent",
                     subject);

        } else {
            snprintf(reason, RD_ERR_LEN, "a bearer token is needed%s",
                     need == RD_NEED_READ
                     ? " (also for reads: anonymous_read is off)" : "");
        }

        rc = RD_AUTH_UNAUTHENTICATED;
        goto done;
    }

    snprintf(who, RD_AUTH_NAME_MAX + 1, "%s", found->name);

    if (rd_auth_has(found, need, svc)) {
        rc = RD_AUTH_ALLOW;
        goto done;
    }

    switch (need) {
    case RD_NEED_READ:
        snprintf(scope, sizeof(scope), "read");
        break;
    case RD_NEED_WRITE:
        snprintf(scope, sizeof(scope), "write:%s", svc);
        break;
    case RD_NEED_POLICIES:
        snprintf(scope, sizeof(scope), "policies");
        break;
    default:
        snprintf(scope, sizeof(scope), "admin");
        break;
    }

    rd_auth_scopes_text(found, has, sizeof(has));

    snprintf(reason, RD_ERR_LEN, "token \"%s\" lacks scope %s (it has: %s)",
             found->name, scope, has[0] ? has : "none");

    rc = RD_AUTH_FORBIDDEN;

done:

    pthread_mutex_unlock(&auth->lock);

    return rc;
}
