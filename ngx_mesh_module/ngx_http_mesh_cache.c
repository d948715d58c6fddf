
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * mesh_cache_file: the zone as JSON (the routed services and the
 * policies), written by the poll owner at most once a second, by a thread
 * of its own (the event loop never waits for the disk), and read at start
 * when the registry cannot be reached.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pthread.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_CACHE_EVERY     1000   /* ms between writes */
#define NGX_HTTP_MESH_CACHE_EXIT_WAIT 10     /* s: a write at exit */


typedef struct {
    ngx_http_mesh_main_conf_t     *mmcf;
    ngx_log_t                     *log;
    ngx_event_t                    ev;          /* the next write */
    ngx_msec_t                     written;
    ngx_uint_t                     dirty;
    ngx_uint_t                     busy;        /* a writer thread runs:
                                                   atomic */
    pthread_t                      thread;      /* the last writer ... */
    ngx_uint_t                     joinable;    /* ... not joined yet */
} ngx_http_mesh_cache_t;


/* one write of the cache file, done off the event loop */
typedef struct {
    u_char                        *json;
    size_t                         len;
    u_char                        *tmp;
    ngx_str_t                      file;
    ngx_log_t                     *log;
    ngx_uint_t                    *busy;        /* cleared when done */
} ngx_http_mesh_cache_job_t;


static void ngx_http_mesh_cache_handler(ngx_event_t *ev);
static void ngx_http_mesh_cache_start(ngx_http_mesh_cache_t *c,
    ngx_uint_t now);
static void *ngx_http_mesh_cache_thread(void *data);
static void ngx_http_mesh_cache_store(ngx_http_mesh_cache_job_t *job);
static void ngx_http_mesh_cache_join(ngx_http_mesh_cache_t *c);


static ngx_http_mesh_cache_t  ngx_http_mesh_cache;


void
ngx_http_mesh_cache_init(ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log)
{
    ngx_http_mesh_cache_t  *c = &ngx_http_mesh_cache;

    c->mmcf = mmcf;
    c->log = log;

    c->ev.handler = ngx_http_mesh_cache_handler;
    c->ev.data = c;
    c->ev.log = log;
    c->ev.cancelable = 1;
}


/* the zone changed: the file is to be written */
void
ngx_http_mesh_cache_dirty(void)
{
    ngx_http_mesh_cache.dirty = 1;
}


/* write it now if the last write is a second old, else when it is */
void
ngx_http_mesh_cache_write(void)
{
    ngx_http_mesh_cache_t  *c = &ngx_http_mesh_cache;

    if (!c->dirty || c->mmcf == NULL || c->mmcf->cache_file.len == 0
        || c->ev.timer_set)
    {
        return;
    }

    if (ngx_current_msec - c->written >= NGX_HTTP_MESH_CACHE_EVERY) {
        ngx_http_mesh_cache_start(c, 0);

    } else {
        ngx_add_timer(&c->ev, NGX_HTTP_MESH_CACHE_EVERY);
    }
}


/*
 * The process ends, or stops polling: what changed is not lost. The
 * writer thread is waited for first, whatever is dirty: its file comes
 * before the last state, and the thread runs this module's code, which
 * nginx unmaps when the exiting worker destroys its cycle.
 */
void
ngx_http_mesh_cache_flush(void)
{
    ngx_http_mesh_cache_t  *c = &ngx_http_mesh_cache;

    ngx_http_mesh_cache_join(c);

    if (c->joinable) {
        return;                 /* a write hangs: another would too */
    }

    if (!c->dirty || c->mmcf == NULL || c->mmcf->cache_file.len == 0) {
        return;
    }

    ngx_http_mesh_cache_start(c, 1);
}


/*
 * The last writer thread has ended. Between writes it has, or is about
 * to (busy is clear): the wait is for its last instructions. At exit it
 * may still be writing: the wait is bounded, a disk that hangs does not
 * keep the process from ending.
 */
static void
ngx_http_mesh_cache_join(ngx_http_mesh_cache_t *c)
{
    struct timespec  ts;

    if (!c->joinable) {
        return;
    }

    if (__atomic_load_n(&c->busy, __ATOMIC_ACQUIRE) == 0) {
        (void) pthread_join(c->thread, NULL);
        c->joinable = 0;
        return;
    }

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += NGX_HTTP_MESH_CACHE_EXIT_WAIT;

    if (pthread_timedjoin_np(c->thread, NULL, &ts) == 0) {
        c->joinable = 0;
        return;
    }

    ngx_log_error(NGX_LOG_WARN, c->log, 0,
                  "mesh: cache file writer still running after %ds",
                  NGX_HTTP_MESH_CACHE_EXIT_WAIT);
}


static void
ngx_http_mesh_cache_handler(ngx_event_t *ev)
{
    ngx_http_mesh_cache_t  *c = ev->data;

    if (c->dirty) {
        ngx_http_mesh_cache_start(c, 0);
    }
}


/*
 * Write the zone to mesh_cache_file: a temporary file of this process,
 * fsync(), rename(), at most once a second. The text is made here (the
 * routed services only: small); the file is written by a thread of its
 * own, so that the poll owner's event loop never waits for the disk. One
 * write at a time: with one still running, the next waits for the timer.
 * now: at exit, written here and now.
 */
static void
ngx_http_mesh_cache_start(ngx_http_mesh_cache_t *c, ngx_uint_t now)
{
    ngx_str_t                  *file;
    pthread_t                   tid;
    ngx_http_mesh_cache_job_t  *job;

    file = &c->mmcf->cache_file;

    if (!now && __atomic_load_n(&c->busy, __ATOMIC_ACQUIRE)) {
        if (!c->ev.timer_set) {
            ngx_add_timer(&c->ev, NGX_HTTP_MESH_CACHE_EVERY);
        }

        return;
    }

    c->dirty = 0;
    c->written = ngx_current_msec;

    job = ngx_calloc(sizeof(ngx_http_mesh_cache_job_t)
                     + file->len + sizeof(".4294967295.tmp"), c->log);
    if (job == NULL) {
        return;
    }

    job->json = ngx_http_mesh_zone_json(&c->mmcf->zone, &job->len, c->log);
    if (job->json == NULL) {
        ngx_free(job);
        return;
    }

    /* two nginx generations may run at once (reload, binary upgrade) */
    job->tmp = (u_char *) (job + 1);
    ngx_sprintf(job->tmp, "%V.%P.tmp%Z", file, ngx_pid);
    job->file = *file;
    job->log = c->log;
    job->busy = &c->busy;

    if (!now) {
        /* the last writer has cleared busy: it has ended, or ends now */
        ngx_http_mesh_cache_join(c);

        __atomic_store_n(&c->busy, 1, __ATOMIC_RELEASE);

        if (pthread_create(&tid, NULL, ngx_http_mesh_cache_thread, job) == 0)
        {
            c->thread = tid;
            c->joinable = 1;
            return;
        }

        /* no thread: write here, as nginx writes its own temp files */
    }

    ngx_http_mesh_cache_store(job);
}


static void *
ngx_http_mesh_cache_thread(void *data)
{
    ngx_http_mesh_cache_store(data);
    return NULL;
}


/* the blocking part of a cache write; frees the job */
static void
ngx_http_mesh_cache_store(ngx_http_mesh_cache_job_t *job)
{
    ngx_fd_t     fd;
    ngx_uint_t  *busy;

    fd = ngx_open_file(job->tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, job->log, ngx_errno,
                      "mesh: cannot write cache file \"%s\"", job->tmp);
        goto done;
    }

    if (ngx_write_fd(fd, job->json, job->len) != (ssize_t) job->len
        || fsync(fd) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, job->log, ngx_errno,
                      "mesh: cannot write cache file \"%s\"", job->tmp);
        ngx_close_file(fd);
        (void) ngx_delete_file(job->tmp);
        goto done;
    }

    ngx_close_file(fd);

    if (ngx_rename_file(job->tmp, job->file.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, job->log, ngx_errno,
                      "mesh: cannot rename \"%s\" to \"%V\"", job->tmp,
                      &job->file);
        (void) ngx_delete_file(job->tmp);
    }

done:

    busy = job->busy;

    ngx_free(job->json);
    ngx_free(job);

    __atomic_store_n(busy, 0, __ATOMIC_RELEASE);
}


/*
 * Read the last good snapshot at start. This runs in the master while it
 * reads the configuration, where a blocking read is what nginx does for
 * every file it loads.
 */
ngx_int_t
ngx_http_mesh_cache_load(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_zone_t *zone, ngx_log_t *log)
{
    char                  err[MESH_ERR_LEN];
    u_char               *buf, *pol, *packed;
    size_t                plen;
    ssize_t               n;
    ngx_fd_t              fd;
    ngx_int_t             rc;
    ngx_file_info_t       fi;
    mesh_snapshot_t      *snap;
    ngx_http_mesh_gen_t  *g;

    fd = ngx_open_file(mmcf->cache_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_NOTICE, log, ngx_errno,
                      "mesh: no cache file \"%V\" to start from",
                      &mmcf->cache_file);
        return NGX_DECLINED;
    }

    rc = NGX_ERROR;
    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_fd_info_n " \"%V\" failed", &mmcf->cache_file);
        goto done;
    }

    buf = ngx_alloc((size_t) ngx_file_size(&fi) + 1, log);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));
    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "mesh: cannot read cache file \"%V\"",
                      &mmcf->cache_file);
        goto done;
    }

    snap = mesh_snapshot_parse((char *) buf, (size_t) n, err, sizeof(err));
    if (snap == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: cache file \"%V\" refused: %s",
                      &mmcf->cache_file, err);
        goto done;
    }

    /* its policies must compile, as those of a poll */
    g = NULL;
    pol = ngx_alloc(snap->policies_len + 1, log);

    if (pol) {
        ngx_memcpy(pol, snap->policies, snap->policies_len + 1);
        g = ngx_http_mesh_gen_create(pol, snap->policies_len, err,
                                     sizeof(err), log);
    } else {
        ngx_cpystrn((u_char *) err, (u_char *) "out of memory", sizeof(err));
    }

    if (g == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: cache file \"%V\" refused: %s",
                      &mmcf->cache_file, err);
        mesh_snapshot_free(snap);
        goto done;
    }

    snap->delta = 0;
    snap->has_policies = 1;

    packed = ngx_http_mesh_gen_pack(g, &plen, log);
    ngx_http_mesh_gen_release(g);

    if (packed == NULL) {
        mesh_snapshot_free(snap);
        goto done;
    }

    rc = ngx_http_mesh_apply(zone, snap, packed, plen, 1, 0, err,
                             sizeof(err));
    ngx_free(packed);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: cache file \"%V\" refused: %s",
                      &mmcf->cache_file, err);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "mesh: started from cache file \"%V\", index %uL",
                      &mmcf->cache_file, snap->index);
        rc = NGX_OK;
    }

    mesh_snapshot_free(snap);

done:

    if (buf) {
        ngx_free(buf);
    }

    ngx_close_file(fd);

    return rc;
}


/*
 * The workers write mesh_cache_file (a file of their own in its
 * directory, renamed over it): a directory they cannot write would show
 * only at the first write, and the cold start the file is for would find
 * none. Said when the configuration is read (nginx -t too), naming the
 * directory and the user; the user is nginx's "user" when the master is
 * root (as given so far, or nginx's default, NGX_USER).
 */
void
ngx_http_mesh_cache_check(ngx_conf_t *cf, ngx_str_t *file)
{
    int               i, n;
    char             *name;
    u_char           *dir, *slash;
    uid_t             uid;
    gid_t             gid, groups[64];
    ngx_uint_t        ok;
    struct passwd    *pw;
    ngx_file_info_t   fi;
    ngx_core_conf_t  *ccf;

    dir = ngx_pnalloc(cf->pool, file->len + 1);
    if (dir == NULL) {
        return;
    }

    ngx_cpystrn(dir, file->data, file->len + 1);

    for (slash = dir + file->len; slash > dir && *slash != '/'; slash--) {
        /* void */
    }

    if (slash == dir) {
        slash++;                /* "/file": the root */
    }

    *slash = '\0';

    if (ngx_file_info(dir, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_WARN, cf->log, ngx_errno,
                      "mesh_cache_file \"%V\": no directory \"%s\", the "
                      "cache file cannot be kept", file, dir);
        return;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    name = NULL;
    uid = geteuid();
    gid = getegid();

    if (uid == 0 && ccf->user != (uid_t) NGX_CONF_UNSET_UINT) {
        name = ccf->username;
        uid = ccf->user;
        gid = ccf->group;

    } else if (uid == 0) {
        pw = getpwnam(NGX_USER);
        if (pw == NULL) {
            return;             /* nginx will say so itself */
        }

        name = NGX_USER;
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }

    if (uid == 0) {
        return;
    }

    if (fi.st_uid == uid) {
        ok = (fi.st_mode & (S_IWUSR|S_IXUSR)) == (S_IWUSR|S_IXUSR);

    } else {
        ok = (fi.st_mode & (S_IWOTH|S_IXOTH)) == (S_IWOTH|S_IXOTH);

        n = 64;
        groups[0] = gid;

        if (name == NULL || getgrouplist(name, gid, groups, &n) == -1)
        {
            n = 1;
        }

        for (i = 0; i < n; i++) {
            if (groups[i] == fi.st_gid) {
                ok = (fi.st_mode & (S_IWGRP|S_IXGRP)) == (S_IWGRP|S_IXGRP);
                break;
            }
        }
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "mesh_cache_file \"%V\": the workers' user \"%s\" "
                      "cannot write its directory \"%s\", the cache file "
                      "cannot be kept (nginx would start without routes "
                      "while the registry is down)", file,
                      name ? name : "(this user)", dir);
    }
}
