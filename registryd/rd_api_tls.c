/*
 * rd_api_tls: HTTPS for the API. The certificate, key and client CA are
 * read once at start and handed to libmicrohttpd (GnuTLS); with a client
 * CA, each request's client certificate is verified here, and its subject
 * (RFC 4514, "CN=ci,O=example") is what a token's `subject` names.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "mesh_alloc.h"
#include "rd_api_int.h"

#define RD_PEM_MAX  (1024 * 1024)


/* a PEM file's text, NUL-terminated; NULL with the reason in err */
static char *
rd_api_tls_read(const char *path, const char *what, int secret, char *err)
{
    int           bad;
    char         *text;
    FILE         *f;
    size_t        n;
    struct stat   st;

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, RD_ERR_LEN, "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }

    /* a key others can read is no secret; group may (Debian's ssl-cert) */
    if (secret && fstat(fileno(f), &st) == 0 && (st.st_mode & 007)) {
        snprintf(err, RD_ERR_LEN, "%s %s can be read or written by others "
                 "(mode %04o): chmod 600 (or 640 for a group) it", what,
                 path, (unsigned int) (st.st_mode & 07777));
        fclose(f);
        return NULL;
    }

    text = mesh_xmalloc(RD_PEM_MAX + 2);
    n = fread(text, 1, RD_PEM_MAX + 1, f);
    bad = ferror(f) ? errno : 0;
    fclose(f);

    /* terminated before it is searched: the rest of the buffer is not
     * the file's */
    text[n] = '\0';

    if (bad || n == 0 || n > RD_PEM_MAX
        || strstr(text, "-----BEGIN ") == NULL)
    {
        snprintf(err, RD_ERR_LEN, "%s %s: %s", what, path,
                 bad ? strerror(bad)
                 : n > RD_PEM_MAX ? "larger than 1 MB" : "not a PEM file");
        free(text);
        return NULL;
    }

    return text;
}


/*
 * The texts read as GnuTLS will read them when libmicrohttpd starts, so
 * that a certificate that is not one, a key that is not its own or a CA
 * file without a certificate stops registryd naming the files.
 */
static int
rd_api_tls_check(rd_api_t *api, const rd_conf_t *conf, char *err)
{
    int                                rc;
    gnutls_datum_t                     cert, key, ca;
    gnutls_certificate_credentials_t   cred;

    if (gnutls_certificate_allocate_credentials(&cred) != 0) {
        snprintf(err, RD_ERR_LEN, "cannot initialize GnuTLS");
        return -1;
    }

    cert.data = (unsigned char *) api->tls_cert;
    cert.size = (unsigned int) strlen(api->tls_cert);
    key.data = (unsigned char *) api->tls_key;
    key.size = (unsigned int) strlen(api->tls_key);

    rc = gnutls_certificate_set_x509_key_mem2(cred, &cert, &key,
                                              GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        snprintf(err, RD_ERR_LEN, "tls_cert %s, tls_key %s: %s",
                 conf->tls_cert, conf->tls_key, gnutls_strerror(rc));
        goto fail;
    }

    if (api->tls_ca) {
        ca.data = (unsigned char *) api->tls_ca;
        ca.size = (unsigned int) strlen(api->tls_ca);

        rc = gnutls_certificate_set_x509_trust_mem(cred, &ca,
                                                   GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            snprintf(err, RD_ERR_LEN, "tls_client_ca %s: %s",
                     conf->tls_client_ca, rc == 0 ? "no certificate in it"
                                                  : gnutls_strerror(rc));
            goto fail;
        }
    }

    gnutls_certificate_free_credentials(cred);
    return 0;

fail:

    gnutls_certificate_free_credentials(cred);
    return -1;
}


int
rd_api_tls_load(rd_api_t *api, const rd_conf_t *conf, char *err)
{
    size_t  n = 0;

    if (conf->tls_cert == NULL) {
        api->tls_opts[0].option = MHD_OPTION_END;
        return 0;
    }

    api->tls_cert = rd_api_tls_read(conf->tls_cert, "tls_cert", 0, err);
    if (api->tls_cert == NULL) {
        return -1;
    }

    api->tls_key = rd_api_tls_read(conf->tls_key, "tls_key", 1, err);
    if (api->tls_key == NULL) {
        return -1;
    }

    api->tls_opts[n].option = MHD_OPTION_HTTPS_MEM_CERT;
    api->tls_opts[n].value = 0;
    api->tls_opts[n++].ptr_value = api->tls_cert;

    api->tls_opts[n].option = MHD_OPTION_HTTPS_MEM_KEY;
    api->tls_opts[n].value = 0;
    api->tls_opts[n++].ptr_value = api->tls_key;

    if (conf->tls_client_ca) {
        api->tls_ca = rd_api_tls_read(conf->tls_client_ca, "tls_client_ca",
                                      0, err);
        if (api->tls_ca == NULL) {
            return -1;
        }

        /* libmicrohttpd then asks each client for a certificate */
        api->tls_opts[n].option = MHD_OPTION_HTTPS_MEM_TRUST;
        api->tls_opts[n].value = 0;
        api->tls_opts[n++].ptr_value = api->tls_ca;
    }

    if (rd_api_tls_check(api, conf, err) != 0) {
        return -1;
    }

    api->tls_opts[n].option = MHD_OPTION_END;
    api->tls_opts[n].value = 0;
    api->tls_opts[n].ptr_value = NULL;

    return 0;
}


void
rd_api_tls_free(rd_api_t *api)
{
    free(api->tls_cert);
    free(api->tls_key);
    free(api->tls_ca);
}


/*
 * A certificate whose extended key usage, when it has one, does not allow
 * TLS client authentication (a server's) is not a client's.
 */
static int
rd_api_tls_client_usage(gnutls_x509_crt_t crt)
{
    int           rc;
    char          oid[128];
    size_t        size;
    unsigned int  i;

    for (i = 0; i < 64; i++) {
        size = sizeof(oid);
        rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &size, NULL);

        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
            return i == 0;      /* no extended key usage: any use */
        }

        if (rc < 0) {
            return 0;
        }

        if (strcmp(oid, GNUTLS_KP_TLS_WWW_CLIENT) == 0
            || strcmp(oid, GNUTLS_KP_ANY) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * With tls_client_ca: the request's client certificate, verified against
 * it (GnuTLS checks the chain, the dates and the signatures); its subject
 * goes to rq->subject. 0, or -1 with the reason when there is none or it
 * does not verify.
 */
int
rd_api_tls_client(rd_req_t *rq, char *reason)
{
    int                              rc;
    unsigned int                     status, n;
    gnutls_datum_t                   dn;
    gnutls_session_t                 session;
    gnutls_x509_crt_t                crt;
    const gnutls_datum_t            *certs;
    const union MHD_ConnectionInfo  *info;

    rq->subject[0] = '\0';

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == NULL || info->tls_session == NULL) {
        snprintf(reason, RD_ERR_LEN, "no TLS session");
        return -1;
    }

    session = (gnutls_session_t) info->tls_session;

    certs = gnutls_certificate_get_peers(session, &n);
    if (certs == NULL || n == 0) {
        snprintf(reason, RD_ERR_LEN, "a client certificate signed by "
                 "tls_client_ca is needed");
        return -1;
    }

    if (gnutls_certificate_verify_peers2(session, &status) != 0
        || status != 0)
    {
        snprintf(reason, RD_ERR_LEN, "the client certificate does not "
                 "verify against tls_client_ca");
        return -1;
    }

    if (gnutls_x509_crt_init(&crt) != 0) {
        snprintf(reason, RD_ERR_LEN, "cannot read the client certificate");
        return -1;
    }

    rc = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);

    if (rc == 0 && !rd_api_tls_client_usage(crt)) {
        gnutls_x509_crt_deinit(crt);
        snprintf(reason, RD_ERR_LEN, "the client certificate is not for "
                 "client authentication (its extended key usage)");
        return -1;
    }

    if (rc == 0) {
        rc = gnutls_x509_crt_get_dn3(crt, &dn, 0);
    }

    gnutls_x509_crt_deinit(crt);

    if (rc != 0) {
        snprintf(reason, RD_ERR_LEN, "cannot read the client certificate's "
                 "subject");
        return -1;
    }

    /* whole or not at all: a subject cut short could be a token's */
    if (dn.size > RD_AUTH_SUBJECT_MAX || memchr(dn.data, '\0', dn.size)) {
        snprintf(reason, RD_ERR_LEN, "the client certificate's subject %s",
                 dn.size > RD_AUTH_SUBJECT_MAX
                 ? "is longer than " RD_AUTH_SUBJECT_MAX_TEXT " characters"
                 : "holds a NUL byte");
        gnutls_free(dn.data);
        return -1;
    }

    snprintf(rq->subject, sizeof(rq->subject), "%.*s", (int) dn.size,
             (const char *) dn.data);
    gnutls_free(dn.data);

    return 0;
}
