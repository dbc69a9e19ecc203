#!/usr/bin/env python3
"""Stand-ins for HTCondor's and Fermilab jobsub_lite's commands (stdlib only).

Every command is a small wrapper (condor_submit, condor_q, ..., jobsub_submit,
...) that calls main() here; main() dispatches on the name the command was run
under. Jobs run for real as local detached processes, each watched by a
"shepherd" (this file run with --shepherd CLUSTER PROC); the commands report
them in the formats the real tools print. See README.md next to this file.

State lives in $PRODOPS_STANDIN_STATE:
    lock                  flock(2) taken around every read-modify-write
    counter               the last cluster id given out
    fail-submits          optional: N > 0 makes the next N submits fail
    jobs/C.P.json         one job: {"ad": {ClassAd attributes}, "x": {private}}
    scratch/C.P/          the job's sandbox (fresh for every run)
    jobsub/C.P.out|.err|.log   a jobsub job's stdout, stderr, event log
    jobsub/C.submit/      a jobsub cluster's copy of its script
    jobsub/C.argv.json    the arguments jobsub_submit was given (a JSON list)
"""

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

HERE = os.path.dirname(os.path.realpath(__file__))
STATE_ENV = "PRODOPS_STANDIN_STATE"
SCHEDD = "standin.local"
JOBSUB_SCHEDD = "jobsub01.fnal.gov"
OWNER = "prodops"
SLOT = "slot1_1@standin.local"
SITE = "Standin_Site"
HOST = "<127.0.0.1:9618?addrs=127.0.0.1-9618&alias=standin.local>"
QUEUED = (1, 2, 5, 6, 7)
FINISHED = (3, 4)
HOLD_BY_USER = 1
HOLD_JOB_POLICY = 3
HOLD_FAILED_TO_CREATE_PROCESS = 6
HOLD_OVER_MEMORY = 34
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class Fail(Exception):
    """A command fails: `message` on stderr, exit `code`."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = message
        self.code = code


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


def write_atomic(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class State:
    def __init__(self, root=None):
        root = root or os.environ.get(STATE_ENV)
        if not root:
            sys.stderr.write(f"standin: set {STATE_ENV}\n")
            sys.exit(2)
        self.root = os.path.abspath(root)
        self.jobs_dir = os.path.join(self.root, "jobs")
        self.jobsub_dir = os.path.join(self.root, "jobsub")
        self.scratch_dir = os.path.join(self.root, "scratch")

    def setup(self):
        for d in (self.root, self.jobs_dir, self.jobsub_dir, self.scratch_dir):
            os.makedirs(d, exist_ok=True)

    @contextmanager
    def lock(self, shared=False):
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def job_path(self, cluster, proc):
        return os.path.join(self.jobs_dir, f"{cluster}.{proc}.json")

    def load(self, cluster, proc):
        try:
            with open(self.job_path(cluster, proc)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def save(self, job):
        ad = job["ad"]
        write_atomic(
            self.job_path(ad["ClusterId"], ad["ProcId"]),
            json.dumps(job, indent=1, sort_keys=True),
        )

    def all_jobs(self):
        jobs = []
        try:
            names = os.listdir(self.jobs_dir)
        except FileNotFoundError:
            return jobs
        for name in names:
            m = re.fullmatch(r"(\d+)\.(\d+)\.json", name)
            if not m:
                continue
            job = self.load(int(m.group(1)), int(m.group(2)))
            if job is not None:
                jobs.append(job)
        jobs.sort(key=lambda j: (j["ad"]["ClusterId"], j["ad"]["ProcId"]))
        return jobs

    def next_cluster(self):
        """The next cluster id (call under the lock)."""
        path = os.path.join(self.root, "counter")
        try:
            with open(path) as f:
                last = int(f.read().strip() or 0)
        except FileNotFoundError:
            last = 0
        write_atomic(path, f"{last + 1}\n")
        return last + 1

    def take_failure(self):
        """True when `fail-submits` asks this submit to fail (call under the lock)."""
        path = os.path.join(self.root, "fail-submits")
        try:
            with open(path) as f:
                n = int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return False
        if n <= 0:
            return False
        write_atomic(path, f"{n - 1}\n")
        return True


# --------------------------------------------------------------------------
# Job ads, events, processes
# --------------------------------------------------------------------------


def set_status(job, status, t=None):
    ad = job["ad"]
    ad["LastJobStatus"] = ad.get("JobStatus", 0)
    ad["JobStatus"] = status
    ad["EnteredCurrentStatus"] = int(t if t is not None else time.time())


def event_time(t):
    return time.strftime("%m/%d %H:%M:%S", time.localtime(t))


def write_event(job, code, text, details=(), t=None):
    """Appends a record to the job's event log (if it has one), locked."""
    ad = job["ad"]
    append_record(job["x"].get("log"), ad["ClusterId"], ad["ProcId"], code, text, details, t)


def append_record(path, cluster, proc, code, text, details=(), t=None):
    """Appends a record `NNN (CCC.PPP.000)` to the event log at `path`
    (none: nothing), locked. A proc of -1, as in a cluster's own records
    under late materialization, prints `-01` (HTCondor's `%03d`)."""
    if not path:
        return
    t = time.time() if t is None else t
    lines = [f"{code:03d} ({cluster:03d}.{proc:03d}.000) {event_time(t)} {text}"]
    lines.extend(details)
    lines.append("...")
    try:
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write("\n".join(lines) + "\n")
            f.flush()
    except OSError:
        pass


def usage_text(seconds):
    s = int(seconds)
    return f"{s // 86400} {s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def usage_line(user, system, what):
    return f"\t\tUsr {usage_text(user)}, Sys {usage_text(system)}  -  {what}"


def resource_lines(ad, disk_kb, memory_mb):
    def row(name, usage, request, allocated):
        return f"\t   {name:<21}:{usage:>9}{request:>9}{allocated:>10}"

    cpus = ad.get("RequestCpus", 1)
    mem = ad.get("RequestMemory", 0)
    disk = ad.get("RequestDisk", 0)
    return [
        f"\t{'Partitionable Resources':<24}:{'Usage':>9}{'Request':>9}{'Allocated':>10}",
        row("Cpus", "", cpus, cpus),
        row("Disk (KB)", disk_kb, disk, max(disk, disk_kb)),
        row("Memory (MB)", memory_mb, mem, mem),
    ]


def note_cluster_end(state, job, t):
    """Writes the cluster's `036 Cluster removed` once every proc of a
    late-materialized cluster has left the queue (call under the lock)."""
    x = job["x"]
    if not x.get("late"):
        return
    cluster = job["ad"]["ClusterId"]
    procs = [j for j in state.all_jobs() if j["ad"]["ClusterId"] == cluster]
    if any(j["ad"]["JobStatus"] not in FINISHED for j in procs):
        return
    append_record(x.get("log"), cluster, -1, 36, "Cluster removed",
                  [f"\tMaterialized {len(procs)} jobs from {len(procs)} items.\tComplete"], t)


def kill_group(pid, sig):
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_run(job):
    """Kills the job's running process group (a removed or held running job)."""
    x = job["x"]
    pid = x.get("pid")
    if pid:
        kill_group(pid, signal.SIGCONT)
        kill_group(pid, signal.SIGKILL)
        x["killed_run"] = x.get("run", 0)


def spawn_shepherd(state, cluster, proc):
    env = dict(os.environ)
    env[STATE_ENV] = state.root
    # `standin.py --shepherd C P`, imported rather than run as a script so its
    # cached bytecode is used.
    boot = "import sys; sys.path.insert(0, sys.argv[1]); import standin; standin.main(sys.argv[1:])"
    subprocess.Popen(
        [sys.executable, "-I", "-c", boot, HERE, "--shepherd", str(cluster), str(proc)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        cwd=state.root,
        env=env,
    )


def new_ad(cluster, proc, t, global_schedd):
    t = int(t)
    return {
        "MyType": "Job",
        "TargetType": "Machine",
        "ClusterId": cluster,
        "ProcId": proc,
        "JobStatus": 1,
        "LastJobStatus": 0,
        "JobUniverse": 5,
        "QDate": t,
        "EnteredCurrentStatus": t,
        "Owner": OWNER,
        "User": f"{OWNER}@{SCHEDD}",
        "GlobalJobId": f"{global_schedd}#{cluster}.{proc}#{t}",
        "NumJobStarts": 0,
        "JobRunCount": 0,
        "JobPrio": 0,
        "ImageSize": 0,
        "CompletionDate": 0,
        "ExitBySignal": False,
        "ExitStatus": 0,
        "RemoteWallClockTime": 0.0,
        "RemoteUserCpu": 0.0,
        "RemoteSysCpu": 0.0,
        "RequestCpus": 1,
        "RequestMemory": 128,
        "RequestDisk": 1024,
    }


# --------------------------------------------------------------------------
# ClassAd bits: values, constraints
# --------------------------------------------------------------------------


def classad_value(text):
    """A submit-file value as a JSON value: literals as such, anything else
    as an unevaluated expression (`/Expr(...)/`, as condor_q -json prints)."""
    v = text.strip()
    m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', v)
    if m:
        return re.sub(r"\\(.)", r"\1", m.group(1))
    if re.fullmatch(r"[+-]?\d+", v):
        return int(v)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", v):
        return float(v)
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    if v.lower() == "undefined":
        return None
    return f"/Expr({v})/"


def lookup(ad, name):
    for key, value in ad.items():
        if key.lower() == name.lower():
            return value
    return None


def _wraps(e):
    """True when the first `(` of `e` closes at its last character."""
    depth = 0
    for i, c in enumerate(e):
        depth += (c == "(") - (c == ")")
        if depth == 0:
            return i == len(e) - 1
    return False


def constraint_matcher(expr):
    """A predicate on ads for the constraints the stand-in understands."""
    e = expr.strip()
    while e.startswith("(") and e.endswith(")") and _wraps(e):
        e = e[1:-1].strip()
    if e.lower() == "true":
        return lambda ad: True
    m = re.fullmatch(r'([A-Za-z_]\w*)\s*(==|=\?=)\s*"((?:[^"\\]|\\.)*)"', e)
    if m:
        attr, op, want = m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))
        if op == "==":
            return lambda ad: isinstance(lookup(ad, attr), str) and lookup(ad, attr).lower() == want.lower()
        return lambda ad: lookup(ad, attr) == want
    m = re.fullmatch(r'([A-Za-z_]\w*)\s*(==|=\?=)\s*(-?\d+)', e)
    if m:
        attr, want = m.group(1), int(m.group(3))
        return lambda ad: lookup(ad, attr) == want
    m = re.fullmatch(r'regexp\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*([A-Za-z_]\w*)\s*\)', e)
    if m:
        pattern = re.compile(re.sub(r"\\(.)", r"\1", m.group(1)))
        attr = m.group(2)
        return lambda ad: isinstance(lookup(ad, attr), str) and pattern.search(lookup(ad, attr)) is not None
    raise Fail("Error: unsupported constraint in stand-in")


def parse_job_spec(text):
    """`12` → (12, None); `12.3` → (12, 3); else None."""
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


def spec_matches(spec, ad):
    cluster, proc = spec
    return ad["ClusterId"] == cluster and (proc is None or ad["ProcId"] == proc)


# --------------------------------------------------------------------------
# condor_q / condor_history
# --------------------------------------------------------------------------


def print_ads_json(ads, attributes):
    if not ads:
        return
    out = []
    for ad in ads:
        if attributes is not None:
            wanted = {a.lower() for a in attributes} | {"clusterid", "procid"}
            ad = {k: v for k, v in ad.items() if k.lower() in wanted}
        out.append(json.dumps(dict(sorted(ad.items())), indent=2))
    sys.stdout.write("[\n" + "\n,\n".join(out) + "\n]\n")


def runtime_text(seconds):
    s = int(seconds)
    return f"{s // 86400}+{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def current_runtime(ad, t):
    wall = float(ad.get("RemoteWallClockTime") or 0)
    if ad.get("JobStatus") == 2 and ad.get("JobCurrentStartDate"):
        wall += t - ad["JobCurrentStartDate"]
    return wall


def command_text(ad):
    cmd = os.path.basename(str(ad.get("JobsubCmd") or ad.get("Cmd") or ""))
    args = ad.get("Args") or ""
    return f"{cmd} {args[:20]}" if args else cmd


def query(argv, history):
    state = State()
    as_json = False
    attributes = None
    matchers = []
    specs = []
    owners = []
    limit = None
    i = 1
    while i < len(argv):
        a = argv[i]

        def value():
            if i + 1 >= len(argv):
                raise Fail(f"Error: Argument {a} requires another argument")
            return argv[i + 1]

        low = a.lower()
        if low in ("-json", "--json"):
            as_json = True
        elif low in ("-attributes", "-attribute", "-attrs"):
            attributes = [s.strip() for s in value().split(",") if s.strip()]
            i += 1
        elif low in ("-constraint", "--constraint"):
            matchers.append(constraint_matcher(value()))
            i += 1
        elif low in ("-limit", "-match"):
            try:
                limit = int(value())
            except ValueError:
                raise Fail(f"Error: {a} requires a number")
            i += 1
        elif low in ("-name", "-pool"):
            i += 1
        elif low in ("-nobatch", "-batch", "-allusers", "-global", "-wide", "-backwards", "-forwards"):
            pass
        elif a.startswith("-"):
            raise Fail(f"Error: unrecognized argument {a}")
        elif parse_job_spec(a):
            specs.append(parse_job_spec(a))
        elif re.fullmatch(r"[A-Za-z_][\w.-]*", a):
            owners.append(a)
        else:
            raise Fail(f"Error: unrecognized argument {a}")
        i += 1
    state.setup()
    if history and os.environ.get("PRODOPS_STANDIN_NO_HISTORY") == "1":
        return 0
    with state.lock(shared=True):
        jobs = state.all_jobs()
    wanted = FINISHED if history else QUEUED
    picked = []
    for job in jobs:
        ad = job["ad"]
        if ad.get("JobStatus") not in wanted:
            continue
        if (specs or owners) and not (
            any(spec_matches(s, ad) for s in specs) or ad.get("Owner") in owners
        ):
            continue
        if not all(m(ad) for m in matchers):
            continue
        picked.append(job)
    if history:
        picked.sort(
            key=lambda j: (j["x"].get("finished_at", 0), j["ad"]["ClusterId"], j["ad"]["ProcId"]),
            reverse=True,
        )
    if limit is not None:
        picked = picked[: max(limit, 0)]
    ads = [j["ad"] for j in picked]
    if as_json:
        print_ads_json(ads, attributes)
        return 0
    t = time.time()
    if history:
        print(" ID     OWNER          SUBMITTED   RUN_TIME     ST  COMPLETED   CMD")
        for ad in ads:
            done = ad.get("CompletionDate") or ad.get("EnteredCurrentStatus") or 0
            print(
                f" {ad['ClusterId']}.{ad['ProcId']:<6} {ad.get('Owner', ''):<14} "
                f"{time.strftime('%m/%d %H:%M', time.localtime(ad.get('QDate', 0)))} "
                f"{runtime_text(current_runtime(ad, t)):>12} {'XC'[ad['JobStatus'] == 4]}  "
                f"{time.strftime('%m/%d %H:%M', time.localtime(done))} {ad.get('Cmd', '')} {ad.get('Args', '')}".rstrip()
            )
        return 0
    print()
    print(f"-- Schedd: {SCHEDD} : {HOST} @ {time.strftime('%m/%d/%y %H:%M:%S', time.localtime(t))}")
    print(" ID         OWNER            SUBMITTED     RUN_TIME ST PRI SIZE CMD")
    counts = {s: 0 for s in range(1, 8)}
    for ad in ads:
        counts[ad["JobStatus"]] = counts.get(ad["JobStatus"], 0) + 1
        st = " IRXCH>S"[ad["JobStatus"]]
        print(
            f" {str(ad['ClusterId']) + '.' + str(ad['ProcId']):<10} {ad.get('Owner', ''):<14} "
            f"{time.strftime('%m/%d %H:%M', time.localtime(ad.get('QDate', 0)))} "
            f"{runtime_text(current_runtime(ad, t)):>12} {st}  {ad.get('JobPrio', 0):<3} "
            f"{ad.get('ImageSize', 0) / 1024.0:4.1f} {command_text(ad)}"
        )
    print()
    print(
        f"Total for query: {len(ads)} jobs; {counts[4]} completed, {counts[3]} removed, "
        f"{counts[1]} idle, {counts[2]} running, {counts[5]} held, {counts[7]} suspended"
    )
    return 0


# --------------------------------------------------------------------------
# condor_rm / hold / release / suspend / continue (and jobsub_rm/hold/release)
# --------------------------------------------------------------------------

ACTIONS = {
    # verb on success, verb in "Couldn't find/<x>", what a job must be for a job id
    "rm": ("marked for removal", "remove", None),
    "hold": ("held", "hold", None),
    "release": ("released", "release", "not held to be released"),
    "suspend": ("suspended", "suspend", "not running to be suspended"),
    "continue": ("continued", "continue", "not suspended to be continued"),
}


def act(state, job, action, reason, t):
    """Applies `action` to `job` (under the lock); False if it does not apply."""
    ad, x = job["ad"], job["x"]
    status = ad.get("JobStatus")
    if status not in QUEUED:
        return False
    who = f"(by user {OWNER})"
    if action == "rm":
        if status in (2, 6, 7):
            stop_run(job)
        set_status(job, 3, t)
        ad["RemoveReason"] = reason or f"via condor_rm {who}"
        x["finished_at"] = t
        state.save(job)
        write_event(job, 9, "Job was aborted by the user.", ["\t" + ad["RemoveReason"]], t)
        note_cluster_end(state, job, t)
    elif action == "hold":
        if status == 5:
            return True
        if status in (2, 6, 7):
            stop_run(job)
        set_status(job, 5, t)
        ad["HoldReason"] = reason or f"via condor_hold {who}"
        ad["HoldReasonCode"] = HOLD_BY_USER
        ad["HoldReasonSubCode"] = 0
        ad["NumHolds"] = ad.get("NumHolds", 0) + 1
        state.save(job)
        write_event(job, 12, "Job was held.", ["\t" + ad["HoldReason"], f"\tCode {HOLD_BY_USER} Subcode 0"], t)
    elif action == "release":
        if status != 5:
            return False
        set_status(job, 1, t)
        ad["LastHoldReason"] = ad.pop("HoldReason", None)
        ad["LastHoldReasonCode"] = ad.pop("HoldReasonCode", None)
        ad["LastHoldReasonSubCode"] = ad.pop("HoldReasonSubCode", None)
        ad["ReleaseReason"] = reason or f"via condor_release {who}"
        state.save(job)
        write_event(job, 13, "Job was released.", ["\t" + ad["ReleaseReason"]], t)
    elif action == "suspend":
        if status != 2:
            return False
        if x.get("pid"):
            kill_group(x["pid"], signal.SIGSTOP)
        set_status(job, 7, t)
        ad["TotalSuspensions"] = ad.get("TotalSuspensions", 0) + 1
        state.save(job)
        write_event(job, 10, "Job was suspended.", ["\tNumber of processes actually suspended: 1"], t)
    elif action == "continue":
        if status != 7:
            return False
        if x.get("pid"):
            kill_group(x["pid"], signal.SIGCONT)
        set_status(job, 2, t)
        state.save(job)
        write_event(job, 11, "Job was unsuspended.", [], t)
    return True


def control(action, specs, owners=(), constraints=(), reason=None, all_jobs=False):
    """Runs `action` on job specs ((cluster, proc|None, label)), owners and
    constraints; prints what condor_rm & co. print. Exit 1 only if nothing matched."""
    state = State()
    state.setup()
    done_word, fail_word, wrong_state = ACTIONS[action]
    out, err = [], []
    matched_any = False
    t = time.time()
    with state.lock():
        jobs = state.all_jobs()

        def run(selected):
            hit = False
            for job in selected:
                if act(state, job, action, reason, t):
                    hit = True
            return hit

        for cluster, proc, label in specs:
            selected = [j for j in jobs if spec_matches((cluster, proc), j["ad"])]
            if proc is None:
                if run([j for j in selected if j["ad"]["JobStatus"] in QUEUED]):
                    matched_any = True
                    out.append(f"All jobs in cluster {cluster} have been {done_word}")
                else:
                    err.append(f"Couldn't find/{fail_word} all jobs in cluster {cluster}")
            else:
                queued = [j for j in selected if j["ad"]["JobStatus"] in QUEUED]
                if not queued:
                    err.append(f"Job {label} not found")
                elif run(queued):
                    matched_any = True
                    out.append(f"Job {label} {done_word}")
                else:
                    err.append(f"Job {label} {wrong_state}")
        for owner in owners:
            mine = [j for j in jobs if j["ad"].get("Owner") == owner and j["ad"]["JobStatus"] in QUEUED]
            if run(mine):
                matched_any = True
                out.append(f'All jobs of user "{owner}" have been {done_word}')
            else:
                err.append(f'Couldn\'t find/{fail_word} all of user {owner}\'s job(s)')
        for text, matcher in constraints:
            hits = [j for j in jobs if j["ad"]["JobStatus"] in QUEUED and matcher(j["ad"])]
            if run(hits):
                matched_any = True
                out.append(f"Jobs matching constraint ({text}) have been {done_word}")
            else:
                err.append(f"Couldn't find/{fail_word} all jobs matching constraint ({text})")
        if all_jobs:
            mine = [j for j in jobs if j["ad"]["JobStatus"] in QUEUED]
            if run(mine):
                matched_any = True
                out.append(f"All jobs have been {done_word}")
            else:
                err.append(f"Couldn't find/{fail_word} all jobs")
    for line in out:
        print(line)
    for line in err:
        sys.stderr.write(line + "\n")
    if not specs and not owners and not constraints and not all_jobs:
        return 1
    return 0 if matched_any else 1


def condor_control(argv, action):
    name = os.path.basename(argv[0])
    specs, owners, constraints = [], [], []
    reason = None
    all_jobs = False
    i = 1
    while i < len(argv):
        a = argv[i]
        low = a.lower()
        if low in ("-constraint", "-reason", "-name", "-pool", "-subcode"):
            if i + 1 >= len(argv):
                raise Fail(f"{name}: {a} requires another argument")
            if low == "-constraint":
                constraints.append((argv[i + 1], constraint_matcher(argv[i + 1])))
            elif low == "-reason":
                reason = argv[i + 1]
            i += 2
            continue
        if low == "-all":
            all_jobs = True
        elif low in ("-forcex", "-totals", "-debug"):
            pass
        elif a.startswith("-"):
            raise Fail(f"{name}: unknown option {a}")
        elif parse_job_spec(a):
            c, p = parse_job_spec(a)
            specs.append((c, p, a))
        elif re.fullmatch(r"[A-Za-z_][\w.-]*", a):
            owners.append(a)
        else:
            raise Fail(f"{name}: invalid job id {a}")
        i += 1
    if not (specs or owners or constraints or all_jobs):
        raise Fail(f"Usage: {name} [options] [constraints]\n"
                   f"  where [constraints] are one or more of\n"
                   f"    cluster.proc | cluster | user | -constraint expr | -all")
    return control(action, specs, owners, constraints, reason, all_jobs)


# --------------------------------------------------------------------------
# condor_submit
# --------------------------------------------------------------------------


def parse_description(text):
    """Submit-description commands: ({lower key: raw value}, {Attr: raw value}, queue count)."""
    keys, custom = {}, {}
    queue = None
    lines = text.splitlines()
    joined = []
    buf = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        joined.append(buf + line)
        buf = ""
    if buf:
        joined.append(buf)
    for number, line in enumerate(joined, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.fullmatch(r"(?i)queue(?:\s+(.*))?", s)
        if m:
            if queue is not None:
                raise Fail("ERROR: the stand-in takes a single 'queue' statement")
            arg = (m.group(1) or "").strip()
            if arg == "":
                queue = 1
            elif re.fullmatch(r"\d+", arg):
                queue = int(arg)
            else:
                raise Fail(f"ERROR: the stand-in takes only 'queue [N]', not: {s}")
            continue
        m = re.fullmatch(r"(\+|(?i:my)\.)?([A-Za-z_][\w.]*)\s*=\s*(.*)", s)
        if not m:
            raise Fail(f"ERROR: on Line {number} of submit file: \nERROR: Parse error in expression: \n\t{s}")
        if m.group(1):
            custom[m.group(2)] = m.group(3).strip()
        else:
            keys[m.group(2).lower()] = m.group(3).strip()
    if queue is None:
        raise Fail("ERROR: no 'queue' statement in the submit file; nothing submitted")
    return keys, custom, queue


def expand_macros(value, keys, cluster, proc, depth=0):
    def rep(m):
        name = m.group(1)
        low = name.lower()
        if low in ("process", "procid"):
            return str(proc)
        if low in ("cluster", "clusterid"):
            return str(cluster)
        if low in ("step", "row"):
            return "0"
        if low == "node":
            return ""
        if low in keys and depth < 10:
            return expand_macros(keys[low], keys, cluster, proc, depth + 1)
        return ""

    return re.sub(r"(?<!\$)\$\(([A-Za-z_][\w.]*)\)", rep, value)


def split_arguments(value):
    """condor `arguments`: the new syntax when double-quoted (single quotes
    group, '' is a quote), else the old one (whitespace; \\" is a quote)."""
    v = value.strip()
    if len(v) >= 2 and v.startswith('"') and v.endswith('"'):
        v = v[1:-1].replace('""', '"')
        args, cur, inq, have = [], "", False, False
        i = 0
        while i < len(v):
            c = v[i]
            if inq:
                if c == "'":
                    if i + 1 < len(v) and v[i + 1] == "'":
                        cur += "'"
                        i += 1
                    else:
                        inq = False
                else:
                    cur += c
            elif c == "'":
                inq, have = True, True
            elif c.isspace():
                if cur or have:
                    args.append(cur)
                cur, have = "", False
            else:
                cur += c
            i += 1
        if inq:
            raise Fail(f"ERROR: Found unbalanced single-quote in arguments: {value}")
        if cur or have:
            args.append(cur)
        return args
    return [a.replace('\\"', '"') for a in v.split()]


def memory_mb(text):
    v = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KkMmGgTt])?[Bb]?", v)
    if not m:
        return None
    n = float(m.group(1))
    unit = (m.group(2) or "M").upper()
    return int(n * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit])


def disk_kb(text):
    v = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KkMmGgTt])?[Bb]?", v)
    if not m:
        return None
    n = float(m.group(1))
    unit = (m.group(2) or "K").upper()
    return int(n * {"K": 1, "M": 1024, "G": 1024 ** 2, "T": 1024 ** 3}[unit])


def parse_environment(value):
    v = value.strip()
    env = {}
    if len(v) >= 2 and v.startswith('"') and v.endswith('"'):
        for word in split_arguments(v):
            if "=" in word:
                k, val = word.split("=", 1)
                env[k] = val
    else:
        for part in v.split(";"):
            if "=" in part:
                k, val = part.split("=", 1)
                env[k.strip()] = val
    return env


def submit_failure():
    return (
        "ERROR: Failed to connect to local queue manager\n"
        "AUTHENTICATE:1003:Failed to authenticate with any method\n"
        "AUTHENTICATE:1004:Failed to authenticate using FS"
    )


def condor_submit(argv):
    state = State()
    files = []
    batch_option = None
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-terse", "-verbose", "-disable", "-debug"):
            pass
        elif a in ("-name", "-remote", "-pool", "-batch-name"):
            if i + 1 >= len(argv):
                raise Fail(f"condor_submit: {a} requires another argument")
            if a == "-batch-name":
                batch_option = argv[i + 1]
            i += 1
        elif a.startswith("-") and a != "-":
            raise Fail(f"condor_submit: unknown option {a}\nUsage: condor_submit [options] [submit-file]")
        else:
            files.append(a)
        i += 1
    if len(files) != 1:
        raise Fail("Usage: condor_submit [options] [submit-file]")
    path = files[0]
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path) as f:
                text = f.read()
    except OSError as e:
        raise Fail(f"ERROR: Failed to open command file ({e.strerror})")
    keys, custom, count = parse_description(text)
    cwd = os.getcwd()

    def key(name, cluster=0, proc=0):
        if name not in keys:
            return None
        return expand_macros(keys[name], keys, cluster, proc).strip()

    iwd = os.path.join(cwd, key("initialdir") or ".")
    iwd = os.path.normpath(iwd)
    if not os.path.isdir(iwd):
        raise Fail(f"ERROR: No such directory: {iwd}")
    exe = key("executable")
    if not exe:
        raise Fail("ERROR: No 'executable' parameter was provided")
    exe = os.path.normpath(os.path.join(cwd, exe))
    if not os.path.isfile(exe):
        raise Fail(f"ERROR: Executable file {exe} does not exist")
    log = key("log")
    if log:
        log = os.path.normpath(os.path.join(iwd, log))
        if not os.path.isdir(os.path.dirname(log)):
            raise Fail(f'ERROR: Invalid log file: "{log}" (No such file or directory)')
    mem = memory_mb(key("request_memory")) if key("request_memory") else 128
    if mem is None:
        raise Fail(f"ERROR: request_memory = {keys['request_memory']} is not a number")
    cpus = key("request_cpus") or "1"
    if not re.fullmatch(r"\d+", cpus):
        raise Fail(f"ERROR: request_cpus = {cpus} is not a number")
    disk = disk_kb(key("request_disk")) if key("request_disk") else 1024
    transfer_exe = (key("transfer_executable") or "true").lower() not in ("false", "no", "0")
    machine_attrs = [a.strip().lower() for a in re.split(r"[\s,]+", key("job_machine_attrs") or "") if a.strip()]
    getenv = (key("getenv") or "false").lower()
    env = parse_environment(key("environment") or "")

    # Late materialization (`max_materialize` / `max_idle`): the cluster
    # writes its own records (proc -1) around its jobs'.
    late = any(key(name) for name in ("max_materialize", "max_idle"))

    state.setup()
    with state.lock():
        if state.take_failure():
            raise Fail(submit_failure())
        cluster = state.next_cluster()
        t = time.time()
        if late:
            append_record(log, cluster, -1, 35, f"Cluster submitted from host: {HOST}", (), t)
        for proc in range(count):
            ad = new_ad(cluster, proc, t, SCHEDD)
            args = split_arguments(key("arguments", cluster, proc) or "")
            out = key("output", cluster, proc) or "/dev/null"
            err = key("error", cluster, proc) or "/dev/null"
            ad.update(
                {
                    "Cmd": exe,
                    "Args": " ".join(args),
                    "Iwd": iwd,
                    "Out": out,
                    "Err": err,
                    "RequestMemory": mem,
                    "RequestCpus": int(cpus),
                    "RequestDisk": disk,
                }
            )
            if log:
                ad["UserLog"] = log
            batch = batch_option or key("batch_name", cluster, proc)
            if batch:
                ad["JobBatchName"] = classad_value(batch) if batch.startswith('"') else batch
            for name, attr in (
                ("requirements", "Requirements"),
                ("periodic_hold", "PeriodicHold"),
                ("periodic_hold_reason", "PeriodicHoldReason"),
                ("periodic_remove", "PeriodicRemove"),
                ("periodic_release", "PeriodicRelease"),
            ):
                if key(name, cluster, proc):
                    ad[attr] = classad_value(key(name, cluster, proc))
            if machine_attrs:
                ad["JobMachineAttrs"] = key("job_machine_attrs")
            for attr, raw in custom.items():
                ad[attr] = classad_value(expand_macros(raw, keys, cluster, proc))
            job = {
                "ad": ad,
                "x": {
                    "kind": "condor",
                    "exe": exe,
                    "transfer_exe": transfer_exe,
                    "args": args,
                    "out": os.path.join(iwd, out),
                    "err": os.path.join(iwd, err),
                    "log": log,
                    "env": env,
                    "getenv": getenv in ("true", "yes", "1"),
                    "site_attr": "glidein_site" in machine_attrs,
                    "run": 0,
                    "late": late,
                },
            }
            state.save(job)
            write_event(job, 0, f"Job submitted from host: {HOST}", [], t)
    print("Submitting job(s)" + "." * count)
    print(f"{count} job(s) submitted to cluster {cluster}.")
    sys.stdout.flush()
    for proc in range(count):
        spawn_shepherd(state, cluster, proc)
    return 0


# --------------------------------------------------------------------------
# The shepherd: runs one proc
# --------------------------------------------------------------------------


def group_rss_kb(pgid):
    """Resident memory of the process group `pgid`, KiB (Linux /proc)."""
    total = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


def dir_kb(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return (total + 1023) // 1024


def wall_limit(ad):
    """N of a `periodic_hold` of the form `(JobStatus == 2) && (time() - EnteredCurrentStatus > N)`."""
    expr = ad.get("PeriodicHold")
    if not isinstance(expr, str):
        return None
    m = re.search(r"JobStatus\s*==\s*2\s*\)?\s*&&\s*\(?\s*time\(\)\s*-\s*EnteredCurrentStatus\s*>\s*(\d+)", expr)
    return int(m.group(1)) if m else None


def job_env(state, job, scratch):
    ad, x = job["ad"], job["x"]
    # Like HTCondor, a job sees only its `environment` (plus the starter's
    # variables) unless it asked for `getenv = true`; PRODOPS_STANDIN_GETENV=1
    # passes the submitter's whole environment to every job.
    passed = x.get("getenv") or os.environ.get("PRODOPS_STANDIN_GETENV") == "1"
    env = dict(os.environ) if passed else {}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        {
            "_CONDOR_SCRATCH_DIR": scratch,
            "_CONDOR_SLOT": "slot1_1",
            "_CONDOR_JOB_IWD": scratch,
            "_CONDOR_JOB_AD": os.path.join(scratch, ".job.ad"),
            "TMPDIR": scratch,
            "TMP": scratch,
            "TEMP": scratch,
            "BATCH_SYSTEM": "HTCondor",
            "OMP_NUM_THREADS": str(ad.get("RequestCpus", 1)),
        }
    )
    env.update(x.get("env") or {})
    return env


def write_job_ad(path, ad):
    lines = []
    for k, v in sorted(ad.items()):
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif v is None:
            text = "undefined"
        elif isinstance(v, (int, float)):
            text = repr(v)
        elif isinstance(v, str) and v.startswith("/Expr(") and v.endswith(")/"):
            text = v[6:-2]
        else:
            text = json.dumps(v)
        lines.append(f"{k} = {text}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def start_run(state, job):
    """Starts the job (under the lock); returns (pid, run) or None if it could not start."""
    ad, x = job["ad"], job["x"]
    c, p = ad["ClusterId"], ad["ProcId"]
    scratch = os.path.join(state.scratch_dir, f"{c}.{p}")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    exe = x["exe"]
    if x.get("transfer_exe", True):
        local = os.path.join(scratch, os.path.basename(exe))
        shutil.copyfile(exe, local)
        os.chmod(local, 0o755)
        exe = local
    write_job_ad(os.path.join(scratch, ".job.ad"), ad)
    t = time.time()
    try:
        # Each run starts its output afresh, as a rerun's transferred output replaces the last.
        with open(x["out"], "wb") as out, open(x["err"], "wb") as err:
            child = subprocess.Popen(
                [exe] + list(x.get("args") or []),
                cwd=scratch,
                env=job_env(state, job, scratch),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
    except OSError as e:
        code = e.errno or 0
        set_status(job, 5, t)
        ad["HoldReason"] = (
            f"Error from {SLOT}: Failed to execute '{exe}': "
            f"(errno={code}: '{os.strerror(code) if code else e}')"
        )
        ad["HoldReasonCode"] = HOLD_FAILED_TO_CREATE_PROCESS
        ad["HoldReasonSubCode"] = code
        ad["NumHolds"] = ad.get("NumHolds", 0) + 1
        state.save(job)
        write_event(job, 12, "Job was held.", ["\t" + ad["HoldReason"],
                                               f"\tCode {HOLD_FAILED_TO_CREATE_PROCESS} Subcode {code}"], t)
        return None
    x["run"] = x.get("run", 0) + 1
    x["pid"] = child.pid
    x["run_started"] = t
    set_status(job, 2, t)
    ad["JobCurrentStartDate"] = int(t)
    ad.setdefault("JobStartDate", int(t))
    ad["ShadowBday"] = int(t)
    ad["NumJobStarts"] = ad.get("NumJobStarts", 0) + 1
    ad["JobRunCount"] = ad.get("JobRunCount", 0) + 1
    ad["RemoteHost"] = SLOT
    if x.get("site_attr") or x.get("kind") == "jobsub":
        ad["MachineAttrGLIDEIN_Site0"] = SITE
    state.save(job)
    write_event(job, 1, f"Job executing on host: {HOST}", [], t)
    # The shepherd reaps the child itself with os.wait4 (for its rusage); a
    # returncode keeps subprocess from ever reaping it behind our back.
    child.returncode = 0
    return child.pid, x["run"]


def policy_hold(state, job, code, reason, t):
    """HTCondor holds the running job itself (under the lock)."""
    ad = job["ad"]
    stop_run(job)
    set_status(job, 5, t)
    ad["HoldReason"] = reason
    ad["HoldReasonCode"] = code
    ad["HoldReasonSubCode"] = 0
    ad["NumHolds"] = ad.get("NumHolds", 0) + 1
    state.save(job)
    write_event(job, 12, "Job was held.", ["\t" + reason, f"\tCode {code} Subcode 0"], t)


def check_policies(state, cluster, proc, pid, run, rss, enforce_memory, now):
    """What HTCondor does to a running job by itself: hold it when it goes
    over its memory request (code 34) or when its `periodic_hold` wall-time
    limit is reached (code 3)."""
    if not os.path.isdir(state.jobs_dir):
        raise FileNotFoundError(state.jobs_dir)
    with state.lock():
        job = state.load(cluster, proc)
        if job is None:
            raise FileNotFoundError(state.job_path(cluster, proc))
        ad, x = job["ad"], job["x"]
        if ad["JobStatus"] != 2 or x.get("run") != run:
            return
        limit_mb = ad.get("RequestMemory")
        wall = wall_limit(ad)
        if enforce_memory and isinstance(limit_mb, int) and limit_mb > 0 and rss > limit_mb * 1024:
            policy_hold(
                state, job, HOLD_OVER_MEMORY,
                f"Error from {SLOT}: Job has gone over cgroup memory limit of {limit_mb} megabytes. "
                f"Last measured usage: {rss // 1024} megabytes.  "
                f"Consider resubmitting with a higher request_memory.",
                now,
            )
        elif wall is not None and now - ad.get("EnteredCurrentStatus", now) > wall:
            reason = ad.get("PeriodicHoldReason")
            if not isinstance(reason, str) or reason.startswith("/Expr("):
                reason = "The job attribute PeriodicHold expression '{}' evaluated to TRUE".format(
                    ad["PeriodicHold"][6:-2])
            policy_hold(state, job, HOLD_JOB_POLICY, reason, now)


def shepherd(cluster, proc):
    state = State()
    cluster, proc = int(cluster), int(proc)
    delay = float(os.environ.get("PRODOPS_STANDIN_START_DELAY") or 0)
    enforce_memory = os.environ.get("PRODOPS_STANDIN_ENFORCE_MEMORY", "1") != "0"
    idle_since = None
    while True:
        # Wait until the job may run.
        started = None
        with state.lock():
            job = state.load(cluster, proc)
            if job is None:
                return
            status = job["ad"]["JobStatus"]
            if status in FINISHED:
                return
            if status == 1:
                now = time.time()
                idle_since = idle_since or now
                if now - idle_since >= delay:
                    started = start_run(state, job)
                    idle_since = None
            else:
                idle_since = None
        if started is None:
            time.sleep(0.1)
            continue
        pid, run = started
        run_started = time.time()
        max_rss = 0
        last_check = 0.0
        while True:
            done, wait_status, usage = os.wait4(pid, os.WNOHANG)
            if done == pid:
                break
            time.sleep(0.05)
            now = time.time()
            if now - last_check < 0.5:
                continue
            last_check = now
            rss = group_rss_kb(pid)
            max_rss = max(max_rss, rss)
            try:
                check_policies(state, cluster, proc, pid, run, rss, enforce_memory, now)
            except FileNotFoundError:
                # The state directory is gone (a test cleaned up): end the job.
                kill_group(pid, signal.SIGCONT)
                kill_group(pid, signal.SIGKILL)
        ended = time.time()
        wall = ended - run_started
        user_cpu, sys_cpu = usage.ru_utime, usage.ru_stime
        rss_kb = max(max_rss, usage.ru_maxrss)
        with state.lock():
            job = state.load(cluster, proc)
            if job is None:
                return
            ad, x = job["ad"], job["x"]
            ad["RemoteWallClockTime"] = round(float(ad.get("RemoteWallClockTime") or 0) + wall, 3)
            ad["RemoteUserCpu"] = round(float(ad.get("RemoteUserCpu") or 0) + user_cpu, 3)
            ad["RemoteSysCpu"] = round(float(ad.get("RemoteSysCpu") or 0) + sys_cpu, 3)
            ad["ResidentSetSize"] = max(int(ad.get("ResidentSetSize") or 0), int(rss_kb))
            ad["ImageSize"] = max(int(ad.get("ImageSize") or 0), int(rss_kb))
            ad["MemoryUsage"] = (ad["ResidentSetSize"] + 1023) // 1024
            ad["LastRemoteHost"] = ad.pop("RemoteHost", SLOT)
            x["pid"] = None
            killed = x.get("killed_run") == run or x.get("run") != run
            if not killed and ad["JobStatus"] in (2, 6, 7):
                set_status(job, 4, ended)
                ad["CompletionDate"] = int(ended)
                x["finished_at"] = ended
                scratch = os.path.join(state.scratch_dir, f"{cluster}.{proc}")
                if os.WIFSIGNALED(wait_status):
                    sig = os.WTERMSIG(wait_status)
                    ad["ExitBySignal"] = True
                    ad["ExitSignal"] = sig
                    ad.pop("ExitCode", None)
                    first = [f"\t(0) Abnormal termination (signal {sig})", "\t(0) No core file"]
                else:
                    code = os.WEXITSTATUS(wait_status)
                    ad["ExitBySignal"] = False
                    ad["ExitCode"] = code
                    ad["ExitStatus"] = code
                    ad.pop("ExitSignal", None)
                    first = [f"\t(1) Normal termination (return value {code})"]
                state.save(job)
                details = first + [
                    usage_line(user_cpu, sys_cpu, "Run Remote Usage"),
                    usage_line(0, 0, "Run Local Usage"),
                    usage_line(ad["RemoteUserCpu"], ad["RemoteSysCpu"], "Total Remote Usage"),
                    usage_line(0, 0, "Total Local Usage"),
                    "\t0  -  Run Bytes Sent By Job",
                    "\t0  -  Run Bytes Received By Job",
                    "\t0  -  Total Bytes Sent By Job",
                    "\t0  -  Total Bytes Received By Job",
                ] + resource_lines(ad, dir_kb(scratch), ad["MemoryUsage"])
                write_event(job, 5, "Job terminated.", details, ended)
                note_cluster_end(state, job, ended)
                return
            state.save(job)
            if ad["JobStatus"] in FINISHED:
                return
        # Held (or already released): wait and run again from scratch.


# --------------------------------------------------------------------------
# jobsub_lite
# --------------------------------------------------------------------------


def jobsub_group(given):
    return given or os.environ.get("GROUP") or os.environ.get("JOBSUB_GROUP")


def jobsub_id_spec(text):
    """`C.P@schedd`, `C@schedd`, `C.@schedd`, `C.P`, `C` → (cluster, proc|None, label)."""
    t = text.strip()
    schedd = None
    if "@" in t:
        t, schedd = t.split("@", 1)
        t = t.rstrip(".")
        if not re.fullmatch(r"[\w.-]+", schedd):
            return None
    spec = parse_job_spec(t)
    if spec is None:
        return None
    label = f"{spec[0]}.{spec[1]}" if spec[1] is not None else str(spec[0])
    return spec[0], spec[1], label


class Options:
    """A tiny option reader: `-x V`, `-xV`, `--long V`, `--long=V`, flags."""

    def __init__(self, prog, argv, valued, flags, stop_at=None):
        self.prog = prog
        self.values = {}
        self.rest = []
        self.trailing = []
        i = 0
        while i < len(argv):
            a = argv[i]
            if stop_at and stop_at(a):
                self.trailing = argv[i:]
                break
            name, value = a, None
            if a.startswith("--") and "=" in a:
                name, value = a.split("=", 1)
            elif re.fullmatch(r"-[A-Za-z]\S+", a) and a[:2] in valued:
                name, value = a[:2], a[2:]
            if name in valued:
                canon = valued[name]
                if value is None:
                    if i + 1 >= len(argv):
                        raise Fail(f"{prog}: error: argument {name}: expected one argument", 2)
                    value = argv[i + 1]
                    i += 1
                self.values.setdefault(canon, []).append(value)
            elif name in flags:
                self.values.setdefault(flags[name], []).append(True)
            elif a.startswith("-") and len(a) > 1:
                raise Fail(f"usage: {prog} [options]\n{prog}: error: unrecognized arguments: {a}", 2)
            else:
                self.rest.append(a)
            i += 1

    def one(self, name, default=None):
        v = self.values.get(name)
        return v[-1] if v else default

    def all(self, name):
        return self.values.get(name, [])


COMMON_VALUED = {
    "-G": "group", "--group": "group",
    "--role": "role",
    "--auth-methods": "auth_methods",
    "-J": "jobid", "--jobid": "jobid",
    "--constraint": "constraint",
    "--user": "user",
    "-name": "name",
    "--jobsub_server": "server",
}
COMMON_FLAGS = {"--verbose": "verbose", "--debug": "verbose", "--devserver": "devserver", "--version": "version"}


def token_lines():
    return [
        "Attempting to get token from https://htvaultprod.fnal.gov:8200 ... succeeded",
        "Storing bearer token in /tmp/bt_token_standin",
    ]


def seconds_of(text):
    v = text.strip().lower()
    v = {"short": "3h", "medium": "8h", "long": "85200s"}.get(v, v)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])?", v)
    if not m:
        raise Fail(f"jobsub_submit: error: unable to convert units on argument '{text}', "
                   f"expected units from ['s', 'm', 'h', 'd']")
    return int(float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"])


def jobsub_units(text, table, default_unit, what):
    v = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KkMmGgTt])?([Bb])?", v)
    if not m or (m.group(3) and not m.group(2)):
        raise Fail(f"jobsub_submit: error: unable to convert units on argument '{text}', "
                   f"expected units from {[u + 'b' for u in table]}")
    unit = (m.group(2) or default_unit).lower()
    return int(float(m.group(1)) * table[unit])


def jobsub_submit(argv):
    prog = "jobsub_submit"
    valued = dict(COMMON_VALUED)
    valued.update({
        "-N": "count", "--memory": "memory", "--disk": "disk",
        "--expected-lifetime": "lifetime", "--cpu": "cpu",
        "--resource-provides": "provides", "--site": "site", "--blacklist": "blacklist",
        "-l": "lines", "--lines": "lines", "--append_condor_requirements": "append_req",
        "-e": "environment", "--environment": "environment",
        "-f": "input", "--tar_file_name": "tar", "--dataset-definition": "dataset",
        "--dataset": "dataset", "--maxConcurrent": "max_concurrent", "--email-to": "email",
        "--mail_never": None, "--OS": "os", "--timeout": "timeout", "--singularity-image": "image",
    })
    valued = {k: v for k, v in valued.items() if v}
    flags = dict(COMMON_FLAGS)
    flags.update({"--onsite": "onsite", "--offsite": "offsite", "--mail_never": "mail_never",
                  "--mail_on_error": "mail_on_error", "--mail_always": "mail_always",
                  "--no-singularity": "no_singularity", "-n": "no_submit", "--no-submit": "no_submit"})
    opts = Options(prog, argv[1:], valued, flags, stop_at=lambda a: a.startswith("file://"))
    group = jobsub_group(opts.one("group"))
    if not group:
        raise Fail(f"usage: {prog} [options] file://executable [args...]\n"
                   f"{prog}: error: the following arguments are required: -G/--group", 2)
    if opts.rest:
        raise Fail(f"{prog}: error: the executable must be given as file:///path/to/script, "
                   f"not {opts.rest[0]!r}")
    if not opts.trailing:
        raise Fail(f"{prog}: error: no executable given (file:///path/to/script)")
    url, script_args = opts.trailing[0], opts.trailing[1:]
    script = url[len("file://"):]
    if not script.startswith("/"):
        script = os.path.join(os.getcwd(), script)
    if not os.path.isfile(script):
        raise Fail(f"{prog}: error: executable {url} does not exist: {script}")
    role = opts.one("role", "Analysis")
    try:
        count = int(opts.one("count", "1"))
    except ValueError:
        raise Fail(f"{prog}: error: argument -N: invalid int value: {opts.one('count')!r}", 2)
    if count < 1:
        raise Fail(f"{prog}: error: -N must be at least 1")
    mem = jobsub_units(opts.one("memory", "2GB"), {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 ** 2}, "m", "memory")
    disk = jobsub_units(opts.one("disk", "10GB"), {"k": 1, "m": 1024, "g": 1024 ** 2, "t": 1024 ** 3}, "k", "disk")
    lifetime = seconds_of(opts.one("lifetime", "8h"))
    try:
        cpu = int(opts.one("cpu", "1"))
    except ValueError:
        raise Fail(f"{prog}: error: argument --cpu: invalid int value: {opts.one('cpu')!r}", 2)
    env = {}
    for e in opts.all("environment"):
        if "=" in e:
            k, v = e.split("=", 1)
        else:
            k, v = e, os.environ.get(e)
            if not v:
                raise Fail(f"--environment {e} was given but no value was in the environment")
        env[k] = v
    provides = {}
    for rp in opts.all("provides"):
        if "=" not in rp:
            raise Fail(f"{prog}: error: --resource-provides takes key=value, not {rp!r}")
        k, v = rp.split("=", 1)
        provides[k] = v
    extra = {}
    for line in opts.all("lines"):
        m = re.fullmatch(r"\s*(\+|(?i:my)\.)([A-Za-z_]\w*)\s*=\s*(.*)", line)
        if m:
            extra[m.group(2)] = classad_value(m.group(3))

    state = State()
    state.setup()
    for line in token_lines():
        print(line)
    sys.stdout.flush()
    if opts.one("no_submit"):
        return 0
    with state.lock():
        if state.take_failure():
            raise Fail(submit_failure() + "\nError: condor_submit exited with failed status code 1")
        cluster = state.next_cluster()
        t = time.time()
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(t))
        import uuid
        uid = str(uuid.uuid4())
        submit_dir = os.path.join(state.jobsub_dir, f"{cluster}.submit")
        os.makedirs(submit_dir, exist_ok=True)
        base = os.path.basename(script)
        copy = os.path.join(submit_dir, base)
        shutil.copyfile(script, copy)
        os.chmod(copy, 0o755)
        write_atomic(os.path.join(state.jobsub_dir, f"{cluster}.argv.json"), json.dumps(argv[1:], indent=1) + "\n")
        usage_model = provides.pop("usage_model", "DEDICATED,OPPORTUNISTIC,OFFSITE")
        for proc in range(count):
            ad = new_ad(cluster, proc, t, JOBSUB_SCHEDD)
            jid = f"{cluster}.{proc}@{JOBSUB_SCHEDD}"
            stem = os.path.join(state.jobsub_dir, f"{cluster}.{proc}")
            ad.update({
                "Cmd": copy,
                "Args": " ".join(script_args),
                "Iwd": submit_dir,
                "Out": stem + ".out",
                "Err": stem + ".err",
                "UserLog": stem + ".log",
                "JobsubCmd": base,
                "Jobsub_Group": group,
                "JobsubJobId": jid,
                "AccountingGroup": f"group_{group}.{OWNER}",
                "RequestMemory": mem,
                "RequestDisk": disk,
                "RequestCpus": cpu,
                "JOB_EXPECTED_MAX_LIFETIME": lifetime,
                "DESIRED_usage_model": usage_model,
                "JobMachineAttrs": "GLIDEIN_Site",
            })
            if opts.one("site"):
                ad["DESIRED_Sites"] = opts.one("site")
            if opts.one("blacklist"):
                ad["Blacklist_Sites"] = opts.one("blacklist")
            for k, v in provides.items():
                ad[f"DESIRED_{k}"] = v
            ad.update(extra)
            job_environment = {
                "CLUSTER": str(cluster),
                "PROCESS": str(proc),
                "JOBSUBJOBSECTION": str(proc),
                "JOBSUBJOBID": jid,
                "GRID_USER": OWNER,
                "EXPERIMENT": group,
                "CONDOR_EXEC": "/tmp",
                "CONDOR_TMP": submit_dir,
                "BEARER_TOKEN_FILE": f".condor_creds/{group}.use",
            }
            job_environment.update(env)
            job = {
                "ad": ad,
                "x": {
                    "kind": "jobsub",
                    "exe": copy,
                    "transfer_exe": True,
                    "args": script_args,
                    "out": stem + ".out",
                    "err": stem + ".err",
                    "log": stem + ".log",
                    "env": job_environment,
                    "getenv": False,
                    "site_attr": True,
                    "run": 0,
                    "group": group,
                    "role": role,
                    "argv": argv[1:],
                    "bundle": f"{base}_{stamp}_{uid}cluster.{cluster}.{proc}",
                    "script": copy,
                },
            }
            for path in (job["x"]["out"], job["x"]["err"], job["x"]["log"]):
                open(path, "a").close()
            state.save(job)
            write_event(job, 0, f"Job submitted from host: {HOST}", [], t)
    print("Submitting job(s)" + "." * count)
    print(f"{count} job(s) submitted to cluster {cluster}.")
    print()
    print(f"Use job id {cluster}.0@{JOBSUB_SCHEDD} to retrieve output")
    sys.stdout.flush()
    for proc in range(count):
        spawn_shepherd(state, cluster, proc)
    return 0


def jobsub_common(argv, extra_valued=None, extra_flags=None):
    prog = os.path.basename(argv[0])
    valued = dict(COMMON_VALUED)
    valued.update(extra_valued or {})
    flags = dict(COMMON_FLAGS)
    flags.update(extra_flags or {})
    opts = Options(prog, argv[1:], valued, flags)
    group = jobsub_group(opts.one("group"))
    if not group:
        raise Fail(f"{argv[0]} needs -G group or $GROUP in the environment.")
    specs = []
    for text in [s for j in opts.all("jobid") for s in j.split(",") if s.strip()] + opts.rest:
        spec = jobsub_id_spec(text)
        if spec is None:
            raise Fail(f"{prog}: error: not a job id: {text}")
        specs.append(spec)
    return prog, opts, group, specs


def jobsub_q(argv):
    prog, opts, group, specs = jobsub_common(argv, extra_flags={"-json": "json", "--json": "json"})
    matcher = constraint_matcher(opts.one("constraint")) if opts.one("constraint") else None
    user = opts.one("user")
    state = State()
    state.setup()
    with state.lock(shared=True):
        jobs = state.all_jobs()
    t = time.time()
    rows = []
    for job in jobs:
        ad = job["ad"]
        if ad.get("JobStatus") not in QUEUED:
            continue
        if user is not None:
            if ad.get("Owner") != user:
                continue
        elif ad.get("Jobsub_Group") != group:
            continue
        if specs and not any(spec_matches((c, p), ad) for c, p, _ in specs):
            continue
        if matcher and not matcher(ad):
            continue
        rows.append(ad)
    if opts.one("json"):
        print_ads_json(rows, None)
        return 0
    print("JOBSUBJOBID                             OWNER       \tSUBMITTED     RUNTIME   ST PRIO   SIZE  COMMAND")
    lines = []
    for ad in rows:
        schedd, jid = ad["GlobalJobId"].split("#")[0], ad["GlobalJobId"].split("#")[1]
        status = ad["JobStatus"]
        st = "UIRXCHE"[status] if 0 <= status < 7 else ""
        submitted = time.strftime("%m/%d %H:%M", time.localtime(ad["QDate"]))
        rt = current_runtime(ad, t)
        s = int(rt)
        runtime = f"{s // 86400:>3}+{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
        lines.append(
            f"{jid + '@' + schedd:<40}{ad.get('Owner', ''):<10}\t{submitted:<11} {runtime} {st} "
            f"{ad.get('JobPrio', 0):>4} {ad.get('ImageSize', 0) / 1024.0:>6.1f} {command_text(ad)}"
        )
    lines.sort(key=lambda line: (line.split()[2:4], line))
    totals = {}
    for line in lines:
        print(line)
        words = re.split(r"\s+", line + "\n")
        if len(words) > 5:
            totals[words[5]] = totals.get(words[5], 0) + 1
    print(
        f"{len(lines)} total; {totals.get('C', 0)} completed, {totals.get('X', 0)} removed, "
        f"{totals.get('I', 0)} idle, {totals.get('R', 0)} running, {totals.get('H', 0)} held, "
        f"{totals.get('S', 0)} suspended"
    )
    return 0


def jobsub_control(argv, action):
    prog, opts, group, specs = jobsub_common(argv, extra_valued={"--reason": "reason"})
    constraints = []
    if opts.one("constraint"):
        constraints.append((opts.one("constraint"), constraint_matcher(opts.one("constraint"))))
    owners = [opts.one("user")] if opts.one("user") else []
    if not (specs or constraints or owners):
        raise Fail(f"{prog}: error: give job ids with -J/--jobid, --constraint or --user")
    return control(action, specs, owners, constraints, opts.one("reason"))


def jobsub_fetchlog(argv):
    prog, opts, group, specs = jobsub_common(
        argv,
        extra_valued={"--unzipdir": "unzipdir", "--destdir": "destdir", "--dest-dir": "destdir",
                      "--archive-format": "format"},
        extra_flags={"--partial": "partial", "--condor": "condor"},
    )
    raw = [s for j in opts.all("jobid") for s in j.split(",") if s.strip()] + opts.rest
    if len(specs) != 1:
        raise Fail("jobid is required." if not specs else f"{prog}: error: give a single job id")
    if opts.one("format", "tar") != "tar":
        raise Fail(f'unknown/unsupported archive format "{opts.one("format")}"')
    cluster, proc, _label = specs[0]
    proc = proc or 0
    jobid = raw[-1].strip().replace(".@", "@")
    state = State()
    state.setup()
    with state.lock(shared=True):
        job = state.load(cluster, proc)
    if job is None or job["x"].get("kind") != "jobsub":
        raise Fail(f"Got error from landscape:\njob {jobid} not found\n"
                   f"{prog}: error: no such job {jobid}")
    x = job["x"]
    files = [
        (x["out"], x["bundle"] + ".out"),
        (x["err"], x["bundle"] + ".err"),
        (x["log"], x["bundle"] + ".log"),
        (x["script"], os.path.basename(x["script"])),
    ]
    unzip, dest = opts.one("unzipdir"), opts.one("destdir")
    if unzip:
        os.makedirs(unzip, exist_ok=True)
        for src, name in files:
            target = os.path.join(unzip, name)
            if os.path.exists(src):
                shutil.copyfile(src, target)
            else:
                open(target, "w").close()
        return 0
    import tarfile
    out_dir = dest or os.getcwd()
    os.makedirs(out_dir, exist_ok=True)
    archive = os.path.join(out_dir, f"{jobid}.tgz")
    with tarfile.open(archive + ".part", "w:gz") as tar:
        for src, name in files:
            if os.path.exists(src):
                tar.add(src, arcname=name)
    os.replace(archive + ".part", archive)
    return 0


# --------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------

COMMANDS = {
    "condor_submit": condor_submit,
    "condor_q": lambda argv: query(argv, history=False),
    "condor_history": lambda argv: query(argv, history=True),
    "condor_rm": lambda argv: condor_control(argv, "rm"),
    "condor_hold": lambda argv: condor_control(argv, "hold"),
    "condor_release": lambda argv: condor_control(argv, "release"),
    "condor_suspend": lambda argv: condor_control(argv, "suspend"),
    "condor_continue": lambda argv: condor_control(argv, "continue"),
    "jobsub_submit": jobsub_submit,
    "jobsub_q": jobsub_q,
    "jobsub_rm": lambda argv: jobsub_control(argv, "rm"),
    "jobsub_hold": lambda argv: jobsub_control(argv, "hold"),
    "jobsub_release": lambda argv: jobsub_control(argv, "release"),
    "jobsub_fetchlog": jobsub_fetchlog,
}


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) >= 4 and argv[1] == "--shepherd":
        try:
            shepherd(argv[2], argv[3])
        except (FileNotFoundError, KeyboardInterrupt):
            pass
        return
    name = os.path.basename(argv[0])
    command = COMMANDS.get(name)
    if command is None:
        sys.stderr.write(f"standin: unknown command {name} (run as one of: {', '.join(sorted(COMMANDS))})\n")
        sys.exit(2)
    try:
        code = command(argv)
    except Fail as e:
        sys.stdout.flush()
        sys.stderr.write(e.message.rstrip("\n") + "\n")
        code = e.code
    sys.stdout.flush()
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
