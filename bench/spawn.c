/*
 * spawn.c - the physical-limit reference for bench/compare.py.
 *
 * Runs a DAG of shell steps with at most J running at once and nothing else: no
 * parsing beyond one line per step, no logging, no state on disk.  Each step is
 * `posix_spawn("/bin/sh", {"sh", "-c", cmd})`, reaped with waitpid(-1), so any engine
 * that also starts `sh -c` per step can at best match it (ratio 1.00 in the table).
 *
 * With -d, a step whose command is plain words (letters, digits, `_./,:+@%=-` and
 * spaces: no shell syntax at all) is posix_spawnp'd as those words, without sh, as make
 * and dagfast start such commands: the limit for an engine that does so (`c-direct`).
 *
 * Usage: spawn -j J [-d] [-l LOGDIR] JOBFILE
 *        spawn -m REPORT -- ARGV...
 *
 * With -l, each step's stdout and stderr go to LOGDIR/<id>.out and LOGDIR/<id>.err,
 * opened by the child before exec as dagfast opens its per-step logs: the limit for
 * an engine that keeps every step's output (compare.py's `c-logs`).
 *
 * JOBFILE: the first line holds N; then one line per step, ids 0..N-1 in order:
 *     <dep ids separated by spaces, possibly none> TAB <command to end of line>
 * A dependency must name a step of the file; cycles are reported, not run.
 *
 * Exit status: 0 when every step exited 0; 1 when a step failed (its dependents are
 * not started, running steps are waited for); 2 for a bad job file or command line.
 *
 * With -m, spawn is instead the launcher compare.py puts in front of every engine: it
 * runs ARGV, reaps it with wait4 and writes "wall_seconds maxrss_kib wait_status
 * cpu_seconds" to REPORT, then exits as ARGV did (cpu_seconds: user + system time of
 * ARGV and of every descendant it waited for, so of the engine and all its steps).  It exists because Linux carries the parent's RSS
 * high-water mark into a forked (or vforked) child across exec, so ru_maxrss of a
 * child of the Python driver can never read below the driver's own RSS; this process
 * is small, so the engine's ru_maxrss is the engine's own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The static graph: successors in CSR form, so releasing a step's dependents costs
 * only its out-degree (no scan of every dependency). */
typedef struct {
    int n;
    char **cmd;
    int *pending;  /* unfinished dependencies of each step */
    int *succ_ptr; /* successors of i are succ[succ_ptr[i] .. succ_ptr[i+1]) */
    int *succ;
} Graph;

/* One running step: the pid to match in waitpid's answer and the step it runs. */
typedef struct {
    pid_t pid;
    int step;
} Slot;

static void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        perror("spawn: malloc");
        exit(2);
    }
    return p;
}

static int fail_input(const char *path, long line, const char *what)
{
    fprintf(stderr, "spawn: %s:%ld: %s\n", path, line, what);
    return 2;
}

/* Reads JOBFILE into g; returns 0, or 2 after printing what is wrong and where. */
static int load(const char *path, Graph *g)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    if ((len = getline(&line, &cap, f)) <= 0 || (g->n = atoi(line)) < 0)
        return fail_input(path, 1, "first line must hold the number of steps");

    int n = g->n;
    g->cmd = xmalloc(sizeof(char *) * n);
    g->pending = calloc(n ? n : 1, sizeof(int));
    g->succ_ptr = calloc(n + 1, sizeof(int));
    /* Edges are collected as (dep, step) pairs first, then bucketed by dep. */
    size_t ecap = 1024, ecount = 0;
    int *edges = xmalloc(sizeof(int) * 2 * ecap);

    for (int i = 0; i < n; i++) {
        if ((len = getline(&line, &cap, f)) <= 0)
            return fail_input(path, i + 2, "fewer step lines than the first line says");
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        char *tab = strchr(line, '\t');
        if (!tab)
            return fail_input(path, i + 2, "expected `deps<TAB>command`");
        *tab = '\0';
        g->cmd[i] = strdup(tab + 1);
        for (char *p = line, *end; *p; p = end) {
            long dep = strtol(p, &end, 10);
            if (end == p)
                return fail_input(path, i + 2, "a dependency is not an integer");
            if (dep < 0 || dep >= n || dep == i)
                return fail_input(path, i + 2, "a dependency names no other step");
            if (ecount == ecap) {
                ecap *= 2;
                int *grown = realloc(edges, sizeof(int) * 2 * ecap);
                if (!grown) {
                    perror("spawn: realloc");
                    return 2;
                }
                edges = grown;
            }
            edges[2 * ecount] = (int)dep;
            edges[2 * ecount + 1] = i;
            ecount++;
            g->pending[i]++;
            g->succ_ptr[dep + 1]++;
        }
    }
    free(line);
    fclose(f);

    for (int i = 0; i < n; i++)
        g->succ_ptr[i + 1] += g->succ_ptr[i];
    g->succ = xmalloc(sizeof(int) * ecount);
    int *fill = xmalloc(sizeof(int) * (n ? n : 1));
    memcpy(fill, g->succ_ptr, sizeof(int) * n);
    for (size_t e = 0; e < ecount; e++)
        g->succ[fill[edges[2 * e]]++] = edges[2 * e + 1];
    free(fill);
    free(edges);
    return 0;
}

/* The -m mode: runs argv, reports its wall time and peak RSS, exits as it did. */
static int measure(const char *report, char **argv)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (err) {
        fprintf(stderr, "spawn: %s: %s\n", argv[0], strerror(err));
        return 127;
    }
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0) {
        if (errno != EINTR) {
            perror("spawn: wait4");
            return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    FILE *f = fopen(report, "w");
    if (!f) {
        perror(report);
        return 2;
    }
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double cpu = (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                 (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    fprintf(f, "%.9f %ld %d %.6f\n", wall, usage.ru_maxrss, status, cpu);
    fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Splits `cmd` into `words` (at most `max - 1`, NULL-terminated) in `buf` when it is
 * plain words; returns 0 when it is not (the shell's to read). */
static int plain_words(const char *cmd, char *buf, size_t size, char **words, int max)
{
    size_t len = strlen(cmd);
    if (len + 1 > size)
        return 0;
    memcpy(buf, cmd, len + 1);
    int n = 0;
    for (char *p = buf; *p;) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        if (n == max - 1)
            return 0;
        words[n++] = p;
        for (; *p && *p != ' '; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./,:+@%=-", *p))
                return 0;
    }
    words[n] = NULL;
    return n > 0 && !strchr(words[0], '=');
}

int main(int argc, char **argv)
{
    int jobs = 0;
    const char *report = NULL, *logdir = NULL;
    int opt, direct = 0;
    while ((opt = getopt(argc, argv, "+j:m:l:d")) != -1) {
        if (opt == 'j')
            jobs = atoi(optarg);
        else if (opt == 'd')
            direct = 1;
        else if (opt == 'm')
            report = optarg;
        else if (opt == 'l')
            logdir = optarg;
        else
            return 2;
    }
    if (report && optind < argc)
        return measure(report, argv + optind);
    if (jobs < 1 || optind != argc - 1) {
        fprintf(stderr, "usage: spawn -j JOBS [-d] [-l LOGDIR] JOBFILE\n       spawn -m REPORT -- ARGV...\n");
        return 2;
    }

    Graph g;
    int rc = load(argv[optind], &g);
    if (rc)
        return rc;

    /* Every step enters the ready queue exactly once, so a plain array suffices; FIFO
     * order with roots by lowest id keeps runs deterministic. */
    int *ready = xmalloc(sizeof(int) * (g.n ? g.n : 1));
    int head = 0, tail = 0;
    for (int i = 0; i < g.n; i++)
        if (g.pending[i] == 0)
            ready[tail++] = i;

    Slot *slots = xmalloc(sizeof(Slot) * jobs);
    int running = 0, done = 0, failed = 0;

    while (done < g.n) {
        /* First, start ready steps while there is room (none after a failure).
         * Second, reap one child and release the dependents it was holding back. */
        while (!failed && running < jobs && head < tail) {
            int step = ready[head++];
            char *child_argv[] = {"sh", "-c", g.cmd[step], NULL};
            pid_t pid;
            posix_spawn_file_actions_t fa, *fap = NULL;
            if (logdir) {
                char out[4096], err_path[4096];
                snprintf(out, sizeof out, "%s/%d.out", logdir, step);
                snprintf(err_path, sizeof err_path, "%s/%d.err", logdir, step);
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                fap = &fa;
            }
            char buf[4096], *words[64];
            int err;
            if (direct && plain_words(g.cmd[step], buf, sizeof buf, words, 64))
                err = posix_spawnp(&pid, words[0], fap, NULL, words, environ);
            else
                err = posix_spawn(&pid, "/bin/sh", fap, NULL, child_argv, environ);
            if (fap)
                posix_spawn_file_actions_destroy(fap);
            if (err) {
                fprintf(stderr, "spawn: step %d: posix_spawn: %s\n", step, strerror(err));
                failed = 1;
                break;
            }
            slots[running].pid = pid;
            slots[running].step = step;
            running++;
        }
        if (running == 0) {
            if (failed)
                break;
            fprintf(stderr, "spawn: %d of %d steps can never start (a cycle)\n",
                    g.n - done, g.n);
            return 2;
        }

        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            perror("spawn: waitpid");
            return 2;
        }
        int k = 0;
        while (k < running && slots[k].pid != pid)
            k++;
        if (k == running) /* not one of ours; cannot happen with posix_spawn only */
            continue;
        int step = slots[k].step;
        slots[k] = slots[--running];
        done++;

        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "spawn: step %d failed (status 0x%x): %s\n", step, status,
                    g.cmd[step]);
            failed = 1;
            continue;
        }
        for (int e = g.succ_ptr[step]; e < g.succ_ptr[step + 1]; e++)
            if (--g.pending[g.succ[e]] == 0)
                ready[tail++] = g.succ[e];
    }
    return failed ? 1 : 0;
}
