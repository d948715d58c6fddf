/*
 * rd_conf: option table, YAML config file, command-line overrides.
 */

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mesh_alloc.h"
#include "rd_conf.h"
#include "rd_etcd.h"
#include "rd_policy.h"
#include "rd_util.h"

typedef enum {
    RD_OPT_STRING,
    RD_OPT_HOSTPORT,
    RD_OPT_LOG_LEVEL,
    RD_OPT_SIZE,
    RD_OPT_DURATION,
    RD_OPT_INT,
    RD_OPT_STORE,
    RD_OPT_URLS,                /* comma-separated, or a YAML sequence */
    RD_OPT_NETS,                /* the same */
    RD_OPT_PREFIX,
    RD_OPT_DOMAINS              /* the same; "" for none */
} rd_opt_type_e;

typedef struct {
    const char     *name;
    rd_opt_type_e   type;
    size_t          offset;
    int64_t         min;
    int64_t         max;
    const char     *deflt;       /* NULL: unset */
} rd_opt_t;

#define RD_OFF(f)  offsetof(rd_conf_t, f)

static const rd_opt_t  rd_opts[] = {
    { "listen", RD_OPT_HOSTPORT, RD_OFF(listen), 0, 0, "127.0.0.1:7770" },
    { "data_dir", RD_OPT_STRING, RD_OFF(data_dir), 0, 0, "./var/registryd" },
    { "token_file", RD_OPT_STRING, RD_OFF(token_file), 0, 0, NULL },
    { "tokens_file", RD_OPT_STRING, RD_OFF(tokens_file), 0, 0, NULL },
    { "log_level", RD_OPT_LOG_LEVEL, RD_OFF(log_level), 0, 0, "info" },
    { "max_body", RD_OPT_SIZE, RD_OFF(max_body), 1024, 64 * 1048576,
      "1m" },
    { "ttl_scan_interval", RD_OPT_DURATION, RD_OFF(ttl_scan_interval),
      10, 10000, "100ms" },
    { "max_wait", RD_OPT_DURATION, RD_OFF(max_wait), 1000, 3600000, "5m" },
    { "default_wait", RD_OPT_DURATION, RD_OFF(default_wait), 0, 3600000,
      "30s" },
    { "connection_limit", RD_OPT_INT, RD_OFF(connection_limit), 16, 1000000,
      "16384" },
    { "threads", RD_OPT_INT, RD_OFF(threads), 1, 64, "2" },
    { "connections_per_address", RD_OPT_INT,
      RD_OFF(connections_per_address), 0, 1000000, "1024" },
    { "waits_per_address", RD_OPT_INT, RD_OFF(waits_per_address), 0,
      1000000, "256" },
    { "events_keep", RD_OPT_INT, RD_OFF(events_keep), 1, 10000000,
      "10000" },
    { "proxy_gone_after", RD_OPT_DURATION, RD_OFF(proxy_gone_after),
      1000, 86400000, "90s" },
    { "events_max_clients", RD_OPT_INT, RD_OFF(events_max_clients), 0,
      100000, "256" },
    { "store", RD_OPT_STORE, RD_OFF(store), 0, 0, "sqlite" },
    { "etcd_endpoints", RD_OPT_URLS, RD_OFF(etcd_endpoints), 0, 0, NULL },
    { "etcd_prefix", RD_OPT_PREFIX, RD_OFF(etcd_prefix), 0, 0,
      "/ngx-mesh/" },
    { "etcd_timeout", RD_OPT_DURATION, RD_OFF(etcd_timeout), 100, 60000,
      "2s" },
    { "etcd_max_txn_ops", RD_OPT_INT, RD_OFF(etcd_max_txn_ops), 3, 1000000,
      "128" },
    { "etcd_history", RD_OPT_DURATION, RD_OFF(etcd_history), 1000,
      604800000, "5m" },
    { "trusted_networks", RD_OPT_NETS, RD_OFF(trusted_networks), 0, 0,
      "127.0.0.0/8,::1/128" },
    { "probe_networks", RD_OPT_NETS, RD_OFF(probe_networks), 0, 0, NULL },
    { "tls_cert", RD_OPT_STRING, RD_OFF(tls_cert), 0, 0, NULL },
    { "tls_key", RD_OPT_STRING, RD_OFF(tls_key), 0, 0, NULL },
    { "tls_client_ca", RD_OPT_STRING, RD_OFF(tls_client_ca), 0, 0, NULL },
    { "domain_suffixes", RD_OPT_DOMAINS, RD_OFF(domain_suffixes), 0, 0,
      "*.svc.cluster.local" },
    { NULL, 0, 0, 0, 0, NULL }
};


#define RD_NETS_MAX  64


/*
 * "*.svc.cluster.local,corp.example": DNS suffixes (lowercase labels of
 * letters, digits and hyphens), each with an optional "*." for one label
 * more (a Kubernetes namespace), at most RD_POLICY_SUFFIXES_MAX
 */
static int
rd_conf_domains_check(const char *list, char *why)
{
    size_t       n, count, label;
    const char  *p, *comma, *s, *end;

    if (list[0] == '\0') {
        return 0;
    }

    count = 0;

    for (p = list; ; p = comma + 1) {
        comma = strchr(p, ',');
        n = comma ? (size_t) (comma - p) : strlen(p);
        s = p;
        end = p + n;

        if (n > 2 && s[0] == '*' && s[1] == '.') {
            s += 2;
        }

        label = 0;

        for ( /* void */ ; s < end; s++) {
            if (*s == '.') {
                if (label == 0) {
                    break;
                }
                label = 0;

            } else if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')
                       || (*s == '-' && label > 0))
            {
                if (++label > 63) {
                    break;
                }

            } else {
                break;
            }
        }

        if (n == 0 || n > RD_POLICY_SUFFIX_LEN || s < end || label == 0) {
            snprintf(why, RD_ERR_LEN, "\"%.*s\" is not a DNS suffix "
                     "(lowercase labels, an optional \"*.\" first)",
                     (int) (n > 64 ? 64 : n), p);
            return -1;
        }

        if (++count > RD_POLICY_SUFFIXES_MAX) {
            snprintf(why, RD_ERR_LEN, "more than %d suffixes",
                     RD_POLICY_SUFFIXES_MAX);
            return -1;
        }

        if (comma == NULL) {
            return 0;
        }
    }
}


/* "127.0.0.0/8,::1/128": networks, comma-separated, at most RD_NETS_MAX */
static int
rd_conf_nets_check(const char *list, char *why)
{
    size_t        n, count;
    mesh_cidr_t   net;
    const char   *p, *comma;

    count = 0;

    for (p = list; ; p = comma + 1) {
        comma = strchr(p, ',');
        n = comma ? (size_t) (comma - p) : strlen(p);

        if (mesh_cidr_parse(p, n, &net) != 0) {
            snprintf(why, RD_ERR_LEN, "\"%.*s\" is not a network "
                     "(ADDR or ADDR/BITS)", (int) (n > 64 ? 64 : n), p);
            return -1;
        }

        if (++count > RD_NETS_MAX) {
            snprintf(why, RD_ERR_LEN, "more than %d networks", RD_NETS_MAX);
            return -1;
        }

        if (comma == NULL) {
            return 0;
        }
    }
}


size_t
rd_conf_networks(const char *list, mesh_cidr_t *nets, size_t max)
{
    size_t       n, count;
    const char  *p, *comma;

    count = 0;

    for (p = list; list && count < max; p = comma + 1) {
        comma = strchr(p, ',');
        n = comma ? (size_t) (comma - p) : strlen(p);

        if (mesh_cidr_parse(p, n, &nets[count]) == 0) {
            count++;
        }

        if (comma == NULL) {
            break;
        }
    }

    return count;
}


int
rd_conf_exposed(const rd_conf_t *conf)
{
    int               port;
    char              host[MESH_ADDR_LEN];
    mesh_cidr_t       lo4, lo6;
    mesh_sockaddr_t   sa;

    if (mesh_hostport_parse(conf->listen, host, sizeof(host), &port, &sa)
        != MESH_ADDR_OK)
    {
        return 1;
    }

    mesh_cidr_parse("127.0.0.0/8", 11, &lo4);
    mesh_cidr_parse("::1", 3, &lo6);

    return !mesh_cidr_match(&lo4, &sa.u.sa) && !mesh_cidr_match(&lo6, &sa.u.sa);
}


static const rd_opt_t *
rd_conf_find(const char *name)
{
    const rd_opt_t  *o;

    for (o = rd_opts; o->name; o++) {
        if (strcmp(o->name, name) == 0) {
            return o;
        }
    }

    return NULL;
}


int
rd_conf_set(rd_conf_t *conf, const char *name, const char *value, char *err)
{
    int              port;
    char             host[MESH_ADDR_LEN], why[RD_ERR_LEN];
    char           **sp;
    int64_t          v, *ip;
    const rd_opt_t  *o;

    o = rd_conf_find(name);
    if (o == NULL) {
        snprintf(err, RD_ERR_LEN, "unknown option \"%s\"", name);
        return -1;
    }

    sp = (char **) ((char *) conf + o->offset);
    ip = (int64_t *) ((char *) conf + o->offset);

    switch (o->type) {

    case RD_OPT_HOSTPORT:
        if (mesh_hostport_parse(value, host, sizeof(host), &port, NULL)
            != MESH_ADDR_OK)
        {
            snprintf(err, RD_ERR_LEN,
                     "%s: \"%s\" is not an IP ADDR:PORT", name, value);
            return -1;
        }
        /* fall through */

    case RD_OPT_STRING:
        if (value[0] == '\0') {
            snprintf(err, RD_ERR_LEN, "%s: empty value", name);
            return -1;
        }
        free(*sp);
        *sp = mesh_xstrdup(value);
        return 0;

    case RD_OPT_STORE:
        if (strcmp(value, "sqlite") != 0 && strcmp(value, "etcd") != 0) {
            snprintf(err, RD_ERR_LEN, "%s: \"%s\" is not one of sqlite, "
                     "etcd", name, value);
            return -1;
        }
        free(*sp);
        *sp = mesh_xstrdup(value);
        return 0;

    case RD_OPT_URLS:
        if (rd_etcd_endpoints_check(value, why) != 0) {
            snprintf(err, RD_ERR_LEN, "%s: %s", name, why);
            return -1;
        }
        free(*sp);
        *sp = mesh_xstrdup(value);
        return 0;

    case RD_OPT_DOMAINS:
        if (rd_conf_domains_check(value, why) != 0) {
            snprintf(err, RD_ERR_LEN, "%s: %s", name, why);
            return -1;
        }
        free(*sp);
        *sp = mesh_xstrdup(value);
        return 0;

    case RD_OPT_NETS:
        if (rd_conf_nets_check(value, why) != 0) {
            snprintf(err, RD_ERR_LEN, "%s: %s", name, why);
            return -1;
        }
        free(*sp);
        *sp = mesh_xstrdup(value);
        return 0;

    case RD_OPT_PREFIX:
        if (value[0] != '/' || strlen(value) > 256
            || strpbrk(value, " \t\r\n") != NULL)
        {
            snprintf(err, RD_ERR_LEN, "%s: \"%s\" must be a key prefix "
                     "starting with \"/\" (at most 256 bytes, no spaces)",
                     name, value);
            return -1;
        }
        free(*sp);
        /* a folder of keys: it ends in '/' */
        if (value[strlen(value) - 1] == '/') {
            *sp = mesh_xstrdup(value);
        } else {
            *sp = mesh_xmalloc(strlen(value) + 2);
            sprintf(*sp, "%s/", value);
        }
        return 0;

    case RD_OPT_LOG_LEVEL:
        if (rd_log_parse_level(value) < 0) {
            snprintf(err, RD_ERR_LEN, "%s: \"%s\" is not one of debug, info, "
                     "warn, error", name, value);
            return -1;
        }
        free(*sp);
        *sp = mesh_xstrdup(value);
        return 0;

    case RD_OPT_SIZE:
        v = mesh_size_parse(value);
        break;

    case RD_OPT_DURATION:
        v = mesh_duration_parse(value);
        break;

    default: /* RD_OPT_INT */
        v = mesh_size_parse(value);
        if (strpbrk(value, "kKmM")) {
            v = -1;
        }
        break;
    }

    if (v < 0) {
        snprintf(err, RD_ERR_LEN, "%s: invalid value \"%s\"", name, value);
        return -1;
    }

    if (v < o->min || v > o->max) {
        snprintf(err, RD_ERR_LEN, "%s: \"%s\" is out of range", name, value);
        return -1;
    }

    *ip = v;
    return 0;
}


void
rd_conf_init(rd_conf_t *conf)
{
    char             err[RD_ERR_LEN];
    const rd_opt_t  *o;

    memset(conf, 0, sizeof(rd_conf_t));

    for (o = rd_opts; o->name; o++) {
        if (o->deflt && rd_conf_set(conf, o->name, o->deflt, err) != 0) {
            fprintf(stderr, "rd_conf: bad default: %s\n", err);
            abort();
        }
    }
}


void
rd_conf_free(rd_conf_t *conf)
{
    const rd_opt_t  *o;

    if (conf == NULL) {
        return;
    }

    for (o = rd_opts; o->name; o++) {
        if (o->type == RD_OPT_STRING || o->type == RD_OPT_HOSTPORT
            || o->type == RD_OPT_LOG_LEVEL || o->type == RD_OPT_STORE
            || o->type == RD_OPT_URLS || o->type == RD_OPT_NETS
            || o->type == RD_OPT_PREFIX || o->type == RD_OPT_DOMAINS)
        {
            char **sp = (char **) ((char *) conf + o->offset);
            free(*sp);
            *sp = NULL;
        }
    }
}


int
rd_conf_check(const rd_conf_t *conf, char *err)
{
    if (strcmp(conf->store, "etcd") == 0 && conf->etcd_endpoints == NULL) {
        snprintf(err, RD_ERR_LEN, "store etcd: etcd_endpoints is not set "
                 "(e.g. --etcd-endpoints http://127.0.0.1:2379)");
        return -1;
    }

    if ((conf->tls_cert == NULL) != (conf->tls_key == NULL)) {
        snprintf(err, RD_ERR_LEN, "tls_cert and tls_key go together: "
                 "%s is set, %s is not", conf->tls_cert ? "tls_cert"
                                                       : "tls_key",
                 conf->tls_cert ? "tls_key" : "tls_cert");
        return -1;
    }

    if (conf->tls_client_ca && conf->tls_cert == NULL) {
        snprintf(err, RD_ERR_LEN, "tls_client_ca needs tls_cert and "
                 "tls_key: client certificates come with HTTPS");
        return -1;
    }

    return 0;
}


int
rd_conf_load_file(rd_conf_t *conf, const char *path, char *err)
{
    int            rc = -1, depth = 0, done = 0, inlist = 0;
    FILE          *f;
    mesh_buf_t     list = { NULL, 0, 0 };
    char           key[128], msg[RD_ERR_LEN];
    yaml_event_t   ev;
    yaml_parser_t  parser;

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, RD_ERR_LEN, "%s: %s", path, strerror(errno));
        return -1;
    }

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    key[0] = '\0';

    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, RD_ERR_LEN, "%s:%zu: %s", path,
                     parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "invalid YAML");
            goto fail;
        }

        switch (ev.type) {

        case YAML_STREAM_END_EVENT:
            done = 1;
            break;

        case YAML_MAPPING_START_EVENT:
            if (++depth > 1 || key[0]) {
                snprintf(err, RD_ERR_LEN, "%s:%zu: option \"%s\" takes a "
                         "scalar value", path, ev.start_mark.line + 1, key);
                yaml_event_delete(&ev);
                goto fail;
            }
            break;

        case YAML_MAPPING_END_EVENT:
            depth--;
            break;

        case YAML_SEQUENCE_START_EVENT:
            if (key[0] && depth == 1 && !inlist
                && (rd_conf_find(key)->type == RD_OPT_URLS
                    || rd_conf_find(key)->type == RD_OPT_NETS
                    || rd_conf_find(key)->type == RD_OPT_DOMAINS))
            {
                inlist = 1;
                mesh_buf_init(&list, 256);
                break;
            }

            snprintf(err, RD_ERR_LEN, "%s:%zu: %s", path,
                     ev.start_mark.line + 1,
                     key[0] ? "option takes a scalar value"
                            : "expected a mapping of options");
            yaml_event_delete(&ev);
            goto fail;

        case YAML_SEQUENCE_END_EVENT:
            /* the end of a list option's sequence */
            inlist = 0;

            if (rd_conf_set(conf, key, list.len ? mesh_buf_cstr(&list) : "",
                            msg)
                != 0)
            {
                snprintf(err, RD_ERR_LEN, "%s:%zu: %s", path,
                         ev.start_mark.line + 1, msg);
                yaml_event_delete(&ev);
                goto fail;
            }

            mesh_buf_free(&list);
            key[0] = '\0';
            break;

        case YAML_SCALAR_EVENT:
            if (depth != 1) {
                snprintf(err, RD_ERR_LEN, "%s:%zu: expected a mapping of "
                         "options", path, ev.start_mark.line + 1);
                yaml_event_delete(&ev);
                goto fail;
            }

            if (inlist) {
                if (list.len) {
                    mesh_buf_addc(&list, ',');
                }

                mesh_buf_adds(&list, (char *) ev.data.scalar.value);
                break;
            }

            if (key[0] == '\0') {
                snprintf(key, sizeof(key), "%s",
                         (char *) ev.data.scalar.value);
                if (rd_conf_find(key) == NULL) {
                    snprintf(err, RD_ERR_LEN, "%s:%zu: unknown option \"%s\"",
                             path, ev.start_mark.line + 1, key);
                    yaml_event_delete(&ev);
                    goto fail;
                }
                break;
            }

            if (rd_conf_set(conf, key, (char *) ev.data.scalar.value, msg)
                != 0)
            {
                snprintf(err, RD_ERR_LEN, "%s:%zu: %s", path,
                         ev.start_mark.line + 1, msg);
                yaml_event_delete(&ev);
                goto fail;
            }

            key[0] = '\0';
            break;

        default:
            break;
        }

        yaml_event_delete(&ev);
    }

    rc = 0;

fail:

    mesh_buf_free(&list);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}
