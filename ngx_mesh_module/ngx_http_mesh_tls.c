
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * TLS to the instances as a DestinationRule's trafficPolicy.tls asks:
 * each distinct setting loaded once per worker (its files read when it
 * first appears in a view: certificate, key, CAs, CRLs) and shared,
 * reference counted, by the targets and connections that use it; a
 * request's share of it (DISABLE: plain TCP even in a proxy_pass https://
 * location; SIMPLE, MUTUAL, ISTIO_MUTUAL: its own copy of the upstream
 * conf); a new connection switched to it before its handshake; the
 * instance's certificate checked during the handshake and the verdict
 * read before the request is sent; and the mesh's own certificates of
 * ISTIO_MUTUAL (mesh_tls_certificate, mesh_tls_certificate_key,
 * mesh_tls_trusted_certificate), loaded with the configuration.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#if (NGX_HTTP_SSL)

struct ngx_http_mesh_tls_s {
    ngx_queue_t                    queue;       /* in the worker's cache */
    ngx_uint_t                     refs;        /* targets, connections */
    ngx_pool_t                    *pool;
    ngx_str_t                      key;         /* the setting, flattened */
    ngx_uint_t                     mode;        /* MESH_TLS_* */
    ngx_uint_t                     verify;      /* the policy checks the
                                                   instance's certificate */
    ngx_uint_t                     insecure;    /* insecureSkipVerify: no
                                                   check at all */
    ngx_uint_t                     failed;      /* unusable: 502, logged */
    ngx_uint_t                     http_logged; /* logged: asked for in a
                                                   proxy_pass http://
                                                   location */
    X509                          *cert;        /* NULL: none presented */
    STACK_OF(X509)                *chain;
    EVP_PKEY                      *pkey;
    X509_STORE                    *store;       /* with verify */
    char                          *sni;         /* NULL: none sent (an
                                                   address) */
    char                         **names;       /* the certificate must
                                                   carry one */
    ngx_uint_t                     nnames;
    ngx_str_t                      names_text;  /* for the log */
    ngx_str_t                      rule;        /* for the logs */
    ngx_str_t                      service;
    ngx_str_t                      ca;          /* caCertificates, or the
                                                   directive's file */
};


static ngx_int_t ngx_http_mesh_tls_load(ngx_http_mesh_tls_t *tls,
    const mesh_tls_t *mt, ngx_uint_t level, ngx_log_t *log);
static ngx_int_t ngx_http_mesh_tls_load_cert(ngx_http_mesh_tls_t *tls,
    const char *field, const char *path, ngx_uint_t level, ngx_log_t *log);
static ngx_int_t ngx_http_mesh_tls_load_key(ngx_http_mesh_tls_t *tls,
    const char *field, const char *path, ngx_uint_t level, ngx_log_t *log);
static ngx_int_t ngx_http_mesh_tls_load_store(ngx_http_mesh_tls_t *tls,
    const char *field, const char *path, const char *crl_field,
    const char *crl, ngx_uint_t level, ngx_log_t *log);
static int ngx_http_mesh_tls_no_password(char *buf, int size, int rwflag,
    void *userdata);
static ngx_int_t ngx_http_mesh_tls_names(ngx_http_mesh_tls_t *tls,
    const mesh_tls_t *mt);
static ngx_uint_t ngx_http_mesh_tls_match(ngx_http_mesh_tls_t *tls,
    X509 *cert);
static int ngx_http_mesh_tls_verify(int ok, X509_STORE_CTX *x509_store);
static void ngx_http_mesh_tls_cleanup(void *data);
static void ngx_http_mesh_tls_connection_cleanup(void *data);


static ngx_queue_t  ngx_http_mesh_tls_cache;
static ngx_uint_t   ngx_http_mesh_tls_cache_init;
static int          ngx_http_mesh_tls_index = -1;    /* SSL ex_data: the
                                                        setting a handshake
                                                        checks against */

static const char  *ngx_http_mesh_tls_modes[] = {
    "", "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"
};


/*
 * The mesh's own certificates (ISTIO_MUTUAL), loaded with the
 * configuration: the three directives go together, and a file that
 * cannot be read is an [emerg] naming the directive and the file.
 */
char *
ngx_http_mesh_tls_conf_identity(ngx_conf_t *cf,
    ngx_http_mesh_main_conf_t *mmcf)
{
    ngx_pool_t           *pool;
    ngx_pool_cleanup_t   *cln;
    ngx_http_mesh_tls_t  *tls;

    if (ngx_http_mesh_tls_index == -1) {
        ngx_http_mesh_tls_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
                                                       NULL);
        if (ngx_http_mesh_tls_index == -1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "SSL_get_ex_new_index() failed");
            return NGX_CONF_ERROR;
        }
    }

    if (mmcf->tls_certificate.len == 0 && mmcf->tls_certificate_key.len == 0
        && mmcf->tls_trusted_certificate.len == 0)
    {
        return NGX_CONF_OK;
    }

    if (mmcf->tls_certificate.len == 0 || mmcf->tls_certificate_key.len == 0
        || mmcf->tls_trusted_certificate.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mesh_tls_certificate\", "
                           "\"mesh_tls_certificate_key\" and "
                           "\"mesh_tls_trusted_certificate\" go together "
                           "(the mesh's certificate, its key, and the CA "
                           "that signs the instances'): \"%s\" is missing",
                           mmcf->tls_certificate.len == 0
                           ? "mesh_tls_certificate"
                           : mmcf->tls_certificate_key.len == 0
                             ? "mesh_tls_certificate_key"
                             : "mesh_tls_trusted_certificate");
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &mmcf->tls_certificate, 1) != NGX_OK
        || ngx_conf_full_name(cf->cycle, &mmcf->tls_certificate_key, 1)
           != NGX_OK
        || ngx_conf_full_name(cf->cycle, &mmcf->tls_trusted_certificate, 1)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    pool = cf->pool;

    tls = ngx_pcalloc(pool, sizeof(ngx_http_mesh_tls_t));
    if (tls == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_mesh_tls_cleanup;
    cln->data = tls;

    tls->pool = pool;
    tls->mode = MESH_TLS_ISTIO_MUTUAL;

    /* the directives' values are NUL-terminated by ngx_conf_full_name() */

    if (ngx_http_mesh_tls_load_cert(tls, "mesh_tls_certificate",
                                    (char *) mmcf->tls_certificate.data,
                                    NGX_LOG_EMERG, cf->log)
        != NGX_OK
        || ngx_http_mesh_tls_load_key(tls, "mesh_tls_certificate_key",
                                      (char *) mmcf->tls_certificate_key.data,
                                      NGX_LOG_EMERG, cf->log)
           != NGX_OK
        || ngx_http_mesh_tls_load_store(tls, "mesh_tls_trusted_certificate",
                                  (char *) mmcf->tls_trusted_certificate.data,
                                  NULL, NULL, NGX_LOG_EMERG, cf->log)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    tls->ca = mmcf->tls_trusted_certificate;
    mmcf->tls_identity = tls;

    return NGX_CONF_OK;
}


/*
 * A target's setting: the worker's one for it, its files read now when
 * it is new (once per setting: the view that first uses it pays for a
 * few small reads). *out NULL: no tls in the policy. A setting that
 * cannot be used is logged here, once, and kept "failed": its requests
 * fail with 502. NGX_ERROR: out of memory.
 */
ngx_int_t
ngx_http_mesh_tls_get(ngx_http_mesh_main_conf_t *mmcf,
    const mesh_destination_rule_t *dr, const mesh_tls_t *mt,
    ngx_http_mesh_tls_t **out, ngx_log_t *log)
{
    u_char               *p, *k, *end;
    size_t                len;
    ngx_uint_t            i;
    ngx_queue_t          *q;
    ngx_pool_t           *pool;
    ngx_pool_cleanup_t   *cln;
    ngx_http_mesh_tls_t  *tls, *id;

    *out = NULL;

    if (dr == NULL || mt == NULL || mt->mode == MESH_TLS_NONE
        || mt->mode > MESH_TLS_ISTIO_MUTUAL)
    {
        return NGX_OK;
    }

    if (!ngx_http_mesh_tls_cache_init) {
        ngx_queue_init(&ngx_http_mesh_tls_cache);
        ngx_http_mesh_tls_cache_init = 1;
    }

    /* the key: everything the setting is made of, the mesh's own
     * certificates for ISTIO_MUTUAL, and the service (the default SNI) */

#define MESH_TLS_LEN(s)  ((s) ? ngx_strlen(s) : 0) + 1

    len = NGX_INT_T_LEN + NGX_PTR_SIZE * 2 + 8
          + MESH_TLS_LEN(mt->client_certificate)
          + MESH_TLS_LEN(mt->private_key)
          + MESH_TLS_LEN(mt->ca_certificates)
          + MESH_TLS_LEN(mt->ca_crl)
          + MESH_TLS_LEN(mt->sni)
          + MESH_TLS_LEN(dr->host);

    for (i = 0; i < mt->nsubject_alt_names; i++) {
        len += MESH_TLS_LEN(mt->subject_alt_names[i]);
    }

#undef MESH_TLS_LEN

    p = ngx_alloc(len, log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    k = p;
    end = p + len;

#define MESH_TLS_KEY(s)  k = ngx_slprintf(k, end, "%s\n", (s) ? (s) : "")

    k = ngx_slprintf(k, end, "%d %d %p\n", mt->mode, mt->insecure_skip_verify,
                     mt->mode == MESH_TLS_ISTIO_MUTUAL
                     ? (void *) mmcf->tls_identity : NULL);
    MESH_TLS_KEY(mt->client_certificate);
    MESH_TLS_KEY(mt->private_key);
    MESH_TLS_KEY(mt->ca_certificates);
    MESH_TLS_KEY(mt->ca_crl);
    MESH_TLS_KEY(mt->sni);
    MESH_TLS_KEY(dr->host);

    for (i = 0; i < mt->nsubject_alt_names; i++) {
        MESH_TLS_KEY(mt->subject_alt_names[i]);
    }

#undef MESH_TLS_KEY

    len = k - p;

    for (q = ngx_queue_head(&ngx_http_mesh_tls_cache);
         q != ngx_queue_sentinel(&ngx_http_mesh_tls_cache);
         q = ngx_queue_next(q))
    {
        tls = ngx_queue_data(q, ngx_http_mesh_tls_t, queue);

        if (tls->key.len == len && ngx_memcmp(tls->key.data, p, len) == 0) {
            ngx_free(p);
            tls->refs++;
            *out = tls;
            return NGX_OK;
        }
    }

    /* new: made and loaded now */

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        ngx_free(p);
        return NGX_ERROR;
    }

    tls = ngx_pcalloc(pool, sizeof(ngx_http_mesh_tls_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    if (tls == NULL || cln == NULL) {
        ngx_free(p);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_mesh_tls_cleanup;
    cln->data = tls;

    tls->pool = pool;
    tls->refs = 1;
    tls->mode = mt->mode;
    tls->insecure = mt->insecure_skip_verify;

    tls->key.data = ngx_pnalloc(pool, len);

    /* the policies go with their generation: copies of our own */
    tls->rule.len = ngx_strlen(dr->name);
    tls->rule.data = ngx_pnalloc(pool, tls->rule.len + 1);
    tls->service.len = ngx_strlen(dr->host);
    tls->service.data = ngx_pnalloc(pool, tls->service.len + 1);

    if (tls->key.data == NULL || tls->rule.data == NULL
        || tls->service.data == NULL)
    {
        ngx_free(p);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_memcpy(tls->key.data, p, len);
    tls->key.len = len;
    ngx_free(p);

    ngx_cpystrn(tls->rule.data, (u_char *) dr->name, tls->rule.len + 1);
    ngx_cpystrn(tls->service.data, (u_char *) dr->host,
                tls->service.len + 1);

    if (ngx_http_mesh_tls_names(tls, mt) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&ngx_http_mesh_tls_cache, &tls->queue);
    *out = tls;

    switch (mt->mode) {

    case MESH_TLS_DISABLE:
        break;

    case MESH_TLS_ISTIO_MUTUAL:
        id = mmcf->tls_identity;

        if (id == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: DestinationRule \"%V\" asks for tls mode "
                          "ISTIO_MUTUAL to service \"%V\": this nginx has "
                          "no mesh certificates; add \"mesh_tls_"
                          "certificate\", \"mesh_tls_certificate_key\" and "
                          "\"mesh_tls_trusted_certificate\" (its requests "
                          "fail with 502 until then)",
                          &tls->rule, &tls->service);
            tls->failed = 1;
            break;
        }

        tls->cert = id->cert;
        X509_up_ref(tls->cert);

        if (id->chain) {
            tls->chain = X509_chain_up_ref(id->chain);
        }

        tls->pkey = id->pkey;
        EVP_PKEY_up_ref(tls->pkey);
        tls->store = id->store;
        X509_STORE_up_ref(tls->store);
        tls->ca = id->ca;
        tls->verify = 1;
        break;

    default: /* SIMPLE, MUTUAL */
        if (ngx_http_mesh_tls_load(tls, mt, NGX_LOG_ERR, log) != NGX_OK) {
            tls->failed = 1;
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "mesh: tls %s of DestinationRule \"%V\" loaded%s",
                   ngx_http_mesh_tls_modes[tls->mode], &tls->rule,
                   tls->failed ? ", unusable" : "");

    return NGX_OK;
}


void
ngx_http_mesh_tls_release(ngx_http_mesh_tls_t *tls)
{
    if (tls == NULL || --tls->refs) {
        return;
    }

    ngx_queue_remove(&tls->queue);
    ngx_destroy_pool(tls->pool);        /* the OpenSSL objects too */
}


/* SIMPLE, MUTUAL: the files the policy names */
static ngx_int_t
ngx_http_mesh_tls_load(ngx_http_mesh_tls_t *tls, const mesh_tls_t *mt,
    ngx_uint_t level, ngx_log_t *log)
{
    if (mt->mode == MESH_TLS_MUTUAL) {
        if (ngx_http_mesh_tls_load_cert(tls, "clientCertificate",
                                        mt->client_certificate, level, log)
            != NGX_OK
            || ngx_http_mesh_tls_load_key(tls, "privateKey", mt->private_key,
                                          level, log)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (mt->ca_certificates == NULL || mt->insecure_skip_verify) {
        return NGX_OK;
    }

    tls->ca.len = ngx_strlen(mt->ca_certificates);
    tls->ca.data = ngx_pnalloc(tls->pool, tls->ca.len);
    if (tls->ca.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(tls->ca.data, mt->ca_certificates, tls->ca.len);

    if (ngx_http_mesh_tls_load_store(tls, "caCertificates",
                                     mt->ca_certificates, "caCrl",
                                     mt->ca_crl, level, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    tls->verify = 1;

    return NGX_OK;
}


/* a certificate, then the chain that follows it in the file */
static ngx_int_t
ngx_http_mesh_tls_load_cert(ngx_http_mesh_tls_t *tls, const char *field,
    const char *path, ngx_uint_t level, ngx_log_t *log)
{
    BIO     *bio;
    X509    *x;
    u_long   n;

    bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        goto failed;
    }

    tls->cert = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    if (tls->cert == NULL) {
        BIO_free(bio);
        goto failed;
    }

    tls->chain = sk_X509_new_null();
    if (tls->chain == NULL) {
        BIO_free(bio);
        goto failed;
    }

    for ( ;; ) {
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL) {
            n = ERR_peek_last_error();

            if (ERR_GET_LIB(n) == ERR_LIB_PEM
                && ERR_GET_REASON(n) == PEM_R_NO_START_LINE)
            {
                /* the end of the file */
                ERR_clear_error();
                break;
            }

            BIO_free(bio);
            goto failed;
        }

        if (sk_X509_push(tls->chain, x) == 0) {
            X509_free(x);
            BIO_free(bio);
            goto failed;
        }
    }

    BIO_free(bio);

    return NGX_OK;

failed:

    ngx_ssl_error(level, log, 0, "mesh: %s%V%scannot read %s \"%s\"",
                  tls->rule.len ? "DestinationRule \"" : "", &tls->rule,
                  tls->rule.len ? "\" tls: " : "", field, path);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_mesh_tls_load_key(ngx_http_mesh_tls_t *tls, const char *field,
    const char *path, ngx_uint_t level, ngx_log_t *log)
{
    BIO  *bio;

    bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        goto failed;
    }

    tls->pkey = PEM_read_bio_PrivateKey(bio, NULL,
                                        ngx_http_mesh_tls_no_password, NULL);
    BIO_free(bio);

    if (tls->pkey == NULL) {
        goto failed;
    }

    if (tls->cert && X509_check_private_key(tls->cert, tls->pkey) != 1) {
        ngx_ssl_error(level, log, 0, "mesh: %s%V%s%s \"%s\" is not the key "
                      "of the certificate",
                      tls->rule.len ? "DestinationRule \"" : "", &tls->rule,
                      tls->rule.len ? "\" tls: " : "", field, path);
        return NGX_ERROR;
    }

    return NGX_OK;

failed:

    ngx_ssl_error(level, log, 0, "mesh: %s%V%scannot read %s \"%s\" (a "
                  "PEM key without a passphrase)",
                  tls->rule.len ? "DestinationRule \"" : "", &tls->rule,
                  tls->rule.len ? "\" tls: " : "", field, path);

    return NGX_ERROR;
}


/* the CAs the instances' certificates are checked against, and CRLs */
static ngx_int_t
ngx_http_mesh_tls_load_store(ngx_http_mesh_tls_t *tls, const char *field,
    const char *path, const char *crl_field, const char *crl,
    ngx_uint_t level, ngx_log_t *log)
{
    BIO         *bio;
    X509        *x;
    u_long       n;
    X509_CRL    *xc;
    ngx_uint_t   count;
    const char  *what, *file;

    what = field;
    file = path;

    tls->store = X509_STORE_new();
    if (tls->store == NULL) {
        goto failed;
    }

    bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        goto failed;
    }

    for (count = 0; /* void */ ; count++) {
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL) {
            break;
        }

        if (X509_STORE_add_cert(tls->store, x) != 1) {
            X509_free(x);
            BIO_free(bio);
            goto failed;
        }

        X509_free(x);
    }

    BIO_free(bio);

    n = ERR_peek_last_error();

    if (count == 0 || ERR_GET_LIB(n) != ERR_LIB_PEM
        || ERR_GET_REASON(n) != PEM_R_NO_START_LINE)
    {
        goto failed;
    }

    ERR_clear_error();

    if (crl == NULL) {
        return NGX_OK;
    }

    what = crl_field;
    file = crl;

    bio = BIO_new_file(crl, "r");
    if (bio == NULL) {
        goto failed;
    }

    for (count = 0; /* void */ ; count++) {
        xc = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
        if (xc == NULL) {
            break;
        }

        if (X509_STORE_add_crl(tls->store, xc) != 1) {
            X509_CRL_free(xc);
            BIO_free(bio);
            goto failed;
        }

        X509_CRL_free(xc);
    }

    BIO_free(bio);

    n = ERR_peek_last_error();

    if (count == 0 || ERR_GET_LIB(n) != ERR_LIB_PEM
        || ERR_GET_REASON(n) != PEM_R_NO_START_LINE)
    {
        goto failed;
    }

    ERR_clear_error();

    /* as nginx's ssl_crl: every certificate of the chain is checked */
    X509_STORE_set_flags(tls->store,
                         X509_V_FLAG_CRL_CHECK|X509_V_FLAG_CRL_CHECK_ALL);

    return NGX_OK;

failed:

    ngx_ssl_error(level, log, 0, "mesh: %s%V%scannot read %s \"%s\" (PEM "
                  "%s)", tls->rule.len ? "DestinationRule \"" : "",
                  &tls->rule, tls->rule.len ? "\" tls: " : "", what, file,
                  what == crl_field ? "CRLs" : "certificates");

    return NGX_ERROR;
}


static int
ngx_http_mesh_tls_no_password(char *buf, int size, int rwflag,
    void *userdata)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) userdata;

    return 0;
}


/*
 * SNI: tls.sni, else the service's name, as a client that calls the
 * service by its name gets it in Istio; none for an address. The names
 * the instance's certificate must carry: subjectAltNames (any of them),
 * else that name; for ISTIO_MUTUAL without subjectAltNames, none (the
 * mesh's CA vouches for its workloads).
 */
static ngx_int_t
ngx_http_mesh_tls_names(ngx_http_mesh_tls_t *tls, const mesh_tls_t *mt)
{
    u_char       *p, *last, *copy;
    size_t        len;
    ngx_str_t     name;
    ngx_uint_t    i;
    const char   *sni;

    sni = mt->sni ? mt->sni : (char *) tls->service.data;

    name.len = ngx_strlen(sni);
    name.data = (u_char *) sni;

    tls->sni = (char *) ngx_pnalloc(tls->pool, name.len + 1);
    if (tls->sni == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) tls->sni, name.data, name.len + 1);

    if (mt->nsubject_alt_names) {
        tls->nnames = mt->nsubject_alt_names;

    } else if (mt->mode != MESH_TLS_ISTIO_MUTUAL) {
        tls->nnames = 1;
    }

    tls->names = ngx_pcalloc(tls->pool, (tls->nnames + 1) * sizeof(char *));
    if (tls->names == NULL) {
        return NGX_ERROR;
    }

    len = 0;

    for (i = 0; i < tls->nnames; i++) {
        tls->names[i] = (mt->nsubject_alt_names)
                        ? (char *) mt->subject_alt_names[i] : tls->sni;
        len += ngx_strlen(tls->names[i]) + sizeof("\"\", ") - 1;
    }

    tls->names_text.data = ngx_pnalloc(tls->pool, len + 1);
    if (tls->names_text.data == NULL) {
        return NGX_ERROR;
    }

    p = tls->names_text.data;
    last = p + len + 1;

    for (i = 0; i < tls->nnames; i++) {
        p = ngx_slprintf(p, last, "%s\"%s\"", i ? ", " : "", tls->names[i]);

        /* the names live in the policies, which go: copies of our own */

        len = ngx_strlen(tls->names[i]) + 1;

        copy = ngx_pnalloc(tls->pool, len);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(copy, tls->names[i], len);
        tls->names[i] = (char *) copy;
    }

    tls->names_text.len = p - tls->names_text.data;

    /* RFC 6066: no address in SNI */

    if (ngx_inet_addr(name.data, name.len) != INADDR_NONE
        || ngx_strlchr(name.data, name.data + name.len, ':'))
    {
        tls->sni = NULL;
    }

    return NGX_OK;
}


/* the certificate carries one of the names: DNS (wildcards as nginx
 * takes them), IP, or a URI (spiffe://...) compared whole */
static ngx_uint_t
ngx_http_mesh_tls_match(ngx_http_mesh_tls_t *tls, X509 *cert)
{
    int                      k, n;
    size_t                   len;
    ngx_uint_t               i, found;
    GENERAL_NAME            *gn;
    ASN1_STRING             *str;
    STACK_OF(GENERAL_NAME)  *sans;

    sans = NULL;
    found = 0;

    for (i = 0; i < tls->nnames && !found; i++) {

        if (ngx_strstr(tls->names[i], "://") == NULL) {
            if (X509_check_host(cert, tls->names[i], 0,
                                X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL)
                == 1
                || X509_check_ip_asc(cert, tls->names[i], 0) == 1)
            {
                found = 1;
            }

            continue;
        }

        if (sans == NULL) {
            sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
            if (sans == NULL) {
                continue;
            }
        }

        len = ngx_strlen(tls->names[i]);
        n = sk_GENERAL_NAME_num(sans);

        for (k = 0; k < n; k++) {
            gn = sk_GENERAL_NAME_value(sans, k);

            if (gn->type != GEN_URI) {
                continue;
            }

            str = gn->d.uniformResourceIdentifier;

            if ((size_t) ASN1_STRING_length(str) == len
                && ngx_memcmp(ASN1_STRING_get0_data(str), tls->names[i], len)
                   == 0)
            {
                found = 1;
                break;
            }
        }
    }

    if (sans) {
        GENERAL_NAMES_free(sans);
    }

    ERR_clear_error();

    return found;
}


/*
 * The request's share of its target's tls, once the target is known
 * (init_peer): DISABLE sends it over plain TCP; SIMPLE, MUTUAL and
 * ISTIO_MUTUAL need the location's TLS (proxy_pass https://) and give
 * the request its own copy of the upstream conf, in which the policy
 * takes over from the location's proxy_ssl_* what it decides. A request
 * that cannot have what the policy asks (pd->tls_refused) fails with 502
 * in get_peer.
 */
ngx_int_t
ngx_http_mesh_tls_conf(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd)
{
    ngx_http_upstream_t       *u;
    ngx_http_mesh_tls_t       *tls;
    ngx_http_upstream_conf_t  *conf;

    tls = pd->target ? pd->target->tls : NULL;

    if (tls == NULL) {
        return NGX_OK;
    }

    u = r->upstream;

    if (tls->mode == MESH_TLS_DISABLE) {
        u->ssl = 0;
        return NGX_OK;
    }

    if (tls->failed) {
        pd->tls_refused = 1;
        return NGX_OK;
    }

    if (!u->ssl || u->conf->ssl == NULL) {
        if (!tls->http_logged) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "mesh: DestinationRule \"%V\" asks for tls mode "
                          "%s to service \"%V\", which this location "
                          "reaches over plain HTTP, where nginx has no TLS "
                          "for it: use \"proxy_pass https://\" (its "
                          "requests fail with 502 until then)",
                          &tls->rule, ngx_http_mesh_tls_modes[tls->mode],
                          &tls->service);
            tls->http_logged = 1;
        }

        pd->tls_refused = 1;
        return NGX_OK;
    }

    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return NGX_ERROR;
    }

    *conf = *u->conf;

    /* set_session switches each new connection to the setting */
    conf->ssl_session_reuse = 1;

    /* the policy's certificate, or none: not the location's */
    conf->ssl_certificate = NULL;
    conf->ssl_certificate_key = NULL;

    /* the policy's SNI */
    conf->ssl_server_name = 0;

    /* the policy's check, or none at all; without caCertificates the
     * location's proxy_ssl_verify still applies */
    if (tls->verify || tls->insecure) {
        conf->ssl_verify = 0;
    }

    u->conf = conf;
    pd->tls_verify = tls->verify;

    return NGX_OK;
}


/*
 * A new TLS connection to an instance, before its handshake (the peer's
 * set_session): the policy's client certificate (none for SIMPLE), SNI,
 * and the check of the instance's certificate, whose verdict
 * ngx_http_mesh_tls_verified() reads before the request is sent.
 */
ngx_int_t
ngx_http_mesh_tls_connection(ngx_peer_connection_t *pc,
    ngx_http_mesh_peer_data_t *pd)
{
    SSL                  *ssl;
    ngx_connection_t     *c;
    ngx_pool_cleanup_t   *cln;
    ngx_http_mesh_tls_t  *tls;

    tls = pd->target ? pd->target->tls : NULL;
    c = pc->connection;

    if (tls == NULL || tls->mode < MESH_TLS_SIMPLE || tls->failed
        || c == NULL || c->ssl == NULL)
    {
        return NGX_OK;
    }

    ssl = c->ssl->connection;

    SSL_certs_clear(ssl);

    if (tls->cert) {
        if (SSL_use_certificate(ssl, tls->cert) != 1
            || (sk_X509_num(tls->chain) && SSL_set1_chain(ssl, tls->chain)
                                           != 1)
            || SSL_use_PrivateKey(ssl, tls->pkey) != 1)
        {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "mesh: the client certificate of DestinationRule "
                          "\"%V\" cannot be set", &tls->rule);
            return NGX_ERROR;
        }
    }

    if (tls->sni && SSL_set_tlsext_host_name(ssl, tls->sni) != 1) {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "mesh: SSL_set_tlsext_host_name(\"%s\") failed",
                      tls->sni);
        return NGX_ERROR;
    }

    if (!tls->verify) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    if (SSL_set1_verify_cert_store(ssl, tls->store) != 1
        || SSL_set_ex_data(ssl, ngx_http_mesh_tls_index, tls) != 1)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "mesh: the CAs of DestinationRule \"%V\" cannot be "
                      "set", &tls->rule);
        return NGX_ERROR;
    }

    /* checked during the handshake, the verdict read before the request
     * is sent (as nginx's proxy_ssl_verify does), so that a refusal is
     * an upstream error with its reason in the log */
    SSL_set_verify(ssl, SSL_VERIFY_NONE, ngx_http_mesh_tls_verify);
    SSL_set_verify_depth(ssl, 100);

    /* the setting lives as long as the connection */
    tls->refs++;
    cln->handler = ngx_http_mesh_tls_connection_cleanup;
    cln->data = tls;

    return NGX_OK;
}


static void
ngx_http_mesh_tls_connection_cleanup(void *data)
{
    ngx_http_mesh_tls_release(data);
}


static int
ngx_http_mesh_tls_verify(int ok, X509_STORE_CTX *x509_store)
{
    int                   err, depth;
    SSL                  *ssl;
    X509                 *cert;
    ngx_connection_t     *c;
    ngx_http_mesh_tls_t  *tls;

    ssl = X509_STORE_CTX_get_ex_data(x509_store,
                                     SSL_get_ex_data_X509_STORE_CTX_idx());
    tls = ssl ? SSL_get_ex_data(ssl, ngx_http_mesh_tls_index) : NULL;

    if (tls == NULL) {
        return ok;
    }

    c = ngx_ssl_get_connection(ssl);
    depth = X509_STORE_CTX_get_error_depth(x509_store);

    if (!ok) {
        err = X509_STORE_CTX_get_error(x509_store);

        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "mesh: upstream SSL certificate verify error: "
                      "(%d:%s) at depth %d, against %V of the tls of "
                      "DestinationRule \"%V\"", err,
                      X509_verify_cert_error_string(err), depth, &tls->ca,
                      &tls->rule);
        return 0;
    }

    if (depth != 0 || tls->nnames == 0) {
        return 1;
    }

    cert = X509_STORE_CTX_get_current_cert(x509_store);

    if (cert && ngx_http_mesh_tls_match(tls, cert)) {
        return 1;
    }

    X509_STORE_CTX_set_error(x509_store, X509_V_ERR_HOSTNAME_MISMATCH);

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "mesh: upstream SSL certificate does not match %s%V "
                  "of the tls of DestinationRule \"%V\"",
                  tls->nnames > 1 ? "any of " : "", &tls->names_text,
                  &tls->rule);

    return 0;
}


/*
 * The request goes out on a new TLS connection whose instance the policy
 * checks: NGX_ERROR when its certificate failed (the reason was logged
 * during the handshake), and the request goes to the next instance, as
 * after a failed connection.
 */
ngx_int_t
ngx_http_mesh_tls_verified(ngx_http_mesh_peer_data_t *pd,
    ngx_connection_t *c)
{
    long  rc;

    if (!pd->tls_verify || c->ssl == NULL) {
        return NGX_OK;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc == X509_V_OK) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "mesh: upstream certificate refused (%l)", rc);

    return NGX_ERROR;
}


static void
ngx_http_mesh_tls_cleanup(void *data)
{
    ngx_http_mesh_tls_t  *tls = data;

    if (tls->cert) {
        X509_free(tls->cert);
    }

    if (tls->chain) {
        sk_X509_pop_free(tls->chain, X509_free);
    }

    if (tls->pkey) {
        EVP_PKEY_free(tls->pkey);
    }

    if (tls->store) {
        X509_STORE_free(tls->store);
    }
}

#endif
