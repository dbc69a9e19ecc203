#!/usr/bin/env python3
"""Self-check of the HTCondor / jobsub_lite stand-ins: runs them on real
scenarios in temporary state directories and checks what they print with
Python mirrors of prodops's Rust parsers (src/batch/htcondor/parse.rs and
src/batch/jobsub/parse.rs). Run: python3 tests/standins/selfcheck.py
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


# --------------------------------------------------------------------------
# Mirrors of the Rust parsers (keep in step with parse.rs)
# --------------------------------------------------------------------------


class ParseError(Exception):
    pass


def rs_lines(text):
    """Rust's str::lines: split on \\n, drop one trailing \\r, no last empty line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [l[:-1] if l.endswith("\r") else l for l in lines]


def rs_u64(text):
    if not re.fullmatch(r"\+?\d+", text):
        raise ValueError(text)
    return int(text)


def condor_parse_submit(out):
    for line in rs_lines(out):
        line = line.strip()
        if " job(s) submitted to cluster " not in line:
            continue
        count, rest = line.split(" job(s) submitted to cluster ", 1)
        if not rest.endswith("."):
            continue
        try:
            return rs_u64(rest[:-1].strip()), rs_u64(count.strip())
        except ValueError:
            continue
    raise ParseError(f"condor_submit printed no cluster: {out!r}")


def literal_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v == int(v):
        return int(v)
    return None


def literal_text(v):
    if isinstance(v, str) and not (v.startswith("/Expr(") and v.endswith(")/")):
        return v
    return None


def condor_parse_ads(text):
    if not text.strip():
        return []
    value = json.loads(text)
    if not isinstance(value, list):
        raise ParseError("not a JSON array")
    ads = []
    for ad in value:
        cluster, proc = literal_int(ad.get("ClusterId")), literal_int(ad.get("ProcId"))
        status = literal_int(ad.get("JobStatus"))
        if cluster is None or cluster < 0 or proc is None or proc < 0:
            raise ParseError("an ad without a readable ClusterId/ProcId")
        if status is None or not 1 <= status <= 7:
            raise ParseError("an ad without a readable JobStatus (1-7)")
        by_signal = ad.get("ExitBySignal") is True
        host = literal_text(ad.get("LastRemoteHost")) or literal_text(ad.get("RemoteHost"))
        ads.append({
            "cluster": cluster, "proc": proc, "status": status,
            "exit_code": None if by_signal else literal_int(ad.get("ExitCode")),
            "exit_signal": literal_int(ad.get("ExitSignal")) if by_signal else None,
            "hold_reason": literal_text(ad.get("HoldReason")),
            "hold_code": literal_int(ad.get("HoldReasonCode")),
            "hold_subcode": literal_int(ad.get("HoldReasonSubCode")),
            "node": host.rsplit("@", 1)[-1] if host else None,
            "site": literal_text(ad.get("MachineAttrGLIDEIN_Site0")),
            "wall": ad.get("RemoteWallClockTime") if isinstance(ad.get("RemoteWallClockTime"), (int, float)) else None,
            "cpu": ad.get("RemoteUserCpu") if isinstance(ad.get("RemoteUserCpu"), (int, float)) else None,
            "rss": literal_int(ad.get("ResidentSetSize")),
            "starts": literal_int(ad.get("NumJobStarts")),
            "global_id": literal_text(ad.get("GlobalJobId")),
        })
    return ads


def parse_header(line):
    def bad():
        return ParseError(f"not an event: {line[:80]!r}")

    if " " not in line:
        raise bad()
    code, rest = line.split(" ", 1)
    if len(code) != 3 or not code.isdigit():
        raise bad()
    rest = rest.lstrip()
    if not rest.startswith("("):
        raise bad()
    rest = rest[1:]
    if ")" not in rest:
        raise bad()
    ident, rest = rest.split(")", 1)
    parts = ident.split(".")
    try:
        cluster, proc = rs_u64(parts[0]), rs_u64(parts[1])
    except (ValueError, IndexError):
        raise bad()
    words = rest.lstrip().split(" ", 2)
    if len(words) < 2:
        raise bad()
    date, clock = words[0], words[1]
    dated = len(date) >= 5 and all(c.isdigit() or c in "/-" for c in date)
    if not dated or ":" not in clock:
        raise bad()
    return {"code": int(code), "cluster": cluster, "proc": proc, "time": f"{date} {clock}",
            "text": words[2].strip() if len(words) > 2 else "", "detail": []}


def condor_parse_event_log(text):
    events, current = [], None
    for i, line in enumerate(rs_lines(text)):
        if line.strip() == "...":
            if current is None:
                raise ParseError(f"event log line {i + 1}: `...` outside a record")
            events.append(current)
            current = None
        elif current is not None:
            current["detail"].append(line.strip())
        elif line.strip():
            try:
                current = parse_header(line)
            except ParseError as e:
                raise ParseError(f"event log line {i + 1}: {e}")
    return events


def termination(event):
    if event["code"] != 5:
        return None
    for line in event["detail"]:
        if "(return value " in line:
            return ("exited", int(line.split("(return value ")[1].rstrip(")").strip()))
        if "(signal " in line:
            return ("signalled", int(line.split("(signal ")[1].rstrip(")").strip()))
    return None


def hold_of(event):
    if event["code"] != 12:
        return None
    reason = event["detail"][0] if event["detail"] else ""
    codes = None
    for line in event["detail"]:
        m = re.fullmatch(r"Code (.*) Subcode (.*)", line)
        if m:
            codes = (int(m.group(1).strip()), int(m.group(2).strip()))
            break
    return reason, codes


def job_states(events):
    jobs = {}
    for e in events:
        ad = jobs.setdefault((e["cluster"], e["proc"]), {"status": 1, "exit_code": None, "exit_signal": None,
                                                          "hold_code": None})
        c = e["code"]
        if c in (0, 4, 7, 13):
            ad["status"] = 1
        elif c in (1, 11):
            ad["status"] = 2
        elif c == 9:
            ad["status"] = 3
        elif c == 10:
            ad["status"] = 7
        elif c == 5:
            ad["status"] = 4
            t = termination(e)
            if t and t[0] == "exited":
                ad["exit_code"] = t[1]
            elif t:
                ad["exit_signal"] = t[1]
        elif c == 12:
            ad["status"] = 5
            h = hold_of(e)
            ad["hold_code"] = h[1][0] if h and h[1] else None
    return jobs


def jobsub_id(text):
    if "@" not in text:
        raise ValueError(text)
    job, schedd = text.split("@", 1)
    if not schedd or not re.fullmatch(r"[A-Za-z0-9_.-]+", schedd):
        raise ValueError(text)
    if "." in job:
        c, p = job.split(".", 1)
        return rs_u64(c), rs_u64(p), schedd
    return rs_u64(job), 0, schedd


def jobsub_parse_submit(out):
    cluster, count = condor_parse_submit(out)
    for line in rs_lines(out):
        line = line.strip()
        if not line.startswith("Use job id "):
            continue
        words = line[len("Use job id "):].split()
        if not words:
            continue
        try:
            c, _p, schedd = jobsub_id(words[0])
        except ValueError:
            continue
        if c == cluster:
            return [f"{cluster}.{p}@{schedd}" for p in range(count)]
    raise ParseError(f"jobsub_submit printed no job id: {out!r}")


def is_int(word):
    try:
        int(word)
        return True
    except ValueError:
        return False


def is_float(word):
    try:
        float(word)
        return True
    except ValueError:
        return False


def jobsub_parse_queue(text):
    jobs = []
    for i, line in enumerate(rs_lines(text)):
        words = line.split()
        if not words or words[0] == "JOBSUBJOBID" or " total; " in line:
            continue
        if len(words) < 7:
            raise ParseError(f"jobsub_q line {i + 1}: too few columns")
        try:
            c, p, schedd = jobsub_id(words[0])
        except ValueError:
            raise ParseError(f"jobsub_q line {i + 1}: not a jobsub job id")
        if is_int(words[5]) and is_float(words[6]):
            status, command = "S", words[7:]  # suspended: jobsub_q prints no ST letter
        elif len(words) < 8:
            raise ParseError(f"jobsub_q line {i + 1}: too few columns")
        elif len(words[5]) != 1 or words[5] not in "UIRXCHE":
            raise ParseError(f"jobsub_q line {i + 1}: unknown status (U I R X C H E)")
        else:
            status, command = words[5], words[8:]
        jobs.append({"id": f"{c}.{p}@{schedd}", "owner": words[1], "status": status,
                     "command": " ".join(command)})
    return jobs


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

CHECKS = 0


def check(cond, what, detail=""):
    global CHECKS
    CHECKS += 1
    if not cond:
        raise AssertionError(f"{what}" + (f"\n--- detail ---\n{detail}" if detail else ""))


class Env:
    def __init__(self, **extra):
        self.dir = tempfile.mkdtemp(prefix="standin-check-")
        self.state = os.path.join(self.dir, "state")
        self.work = os.path.join(self.dir, "work")
        os.makedirs(self.work)
        self.env = dict(os.environ)
        self.env["PATH"] = HERE + os.pathsep + self.env.get("PATH", "")
        self.env["PRODOPS_STANDIN_STATE"] = self.state
        self.env.update(extra)

    def run(self, *args, ok=True, env=None, cwd=None):
        e = dict(self.env)
        e.update(env or {})
        t = time.time()
        p = subprocess.run(list(args), capture_output=True, text=True, env=e, cwd=cwd or self.work, timeout=30)
        p.elapsed = time.time() - t
        if ok and p.returncode != 0:
            raise AssertionError(f"{args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p

    def script(self, name, body):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
        return path

    def submit_file(self, name, lines):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def ads(self, command, *args):
        return condor_parse_ads(self.run(command, "-json", *args).stdout)

    def job(self, cluster, proc):
        with open(os.path.join(self.state, "jobs", f"{cluster}.{proc}.json")) as f:
            return json.load(f)

    def wait(self, what, predicate, timeout=15.0):
        end = time.time() + timeout
        while time.time() < end:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def status(self, cluster, proc):
        return self.job(cluster, proc)["ad"]["JobStatus"]

    def events(self, path):
        with open(path) as f:
            return condor_parse_event_log(f.read())

    def close(self):
        if os.path.isdir(os.path.join(self.state, "jobs")):
            self.run("condor_rm", "-all", ok=False)
        time.sleep(0.3)
        shutil.rmtree(self.dir, ignore_errors=True)


def description(env, exe, count, extra=(), batch="prodops-check", log="events.log", args="$(Process)"):
    return [
        "# stand-in self-check",
        "universe = vanilla",
        f"batch_name = {batch}",
        f"executable = {exe}",
        f"arguments = {args}",
        f"initialdir = {env.work}",
        "output = $(Cluster).$(Process).out",
        "error = $(Cluster).$(Process).err",
        f"log = {os.path.join(env.work, log)}",
        "should_transfer_files = YES",
        "when_to_transfer_output = ON_EXIT",
        "request_memory = 200",
        "request_cpus = 1",
        "+JOB_EXPECTED_MAX_LIFETIME = 7200",
        "job_machine_attrs = GLIDEIN_Site",
        '+DESIRED_Sites = "FNAL,Wisconsin"',
        *extra,
        f"queue {count}",
    ]


EVENT_HEADER = re.compile(r"^\d{3} \(\d{3,}\.\d{3}\.\d{3}\) \d\d/\d\d \d\d:\d\d:\d\d \S.*$")


def check_log_layout(path):
    """Each record: a header like the real samples, tab-indented details, `...`."""
    with open(path) as f:
        lines = f.read().split("\n")
    check(lines[-1] == "", "the event log ends with a newline")
    inside = False
    for line in lines[:-1]:
        if not inside:
            check(EVENT_HEADER.match(line) is not None, f"event header layout: {line!r}")
            inside = True
        elif line == "...":
            inside = False
        else:
            check(line.startswith("\t") and line.strip(), f"event detail is tab-indented: {line!r}")
    check(not inside, "the last record is closed by `...`")


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


def scenario_mirrors_read_the_samples():
    events = condor_parse_event_log(open(os.path.join(FIXTURES, "htcondor", "test_event_reader.log")).read())
    check([e["code"] for e in events] == [0, 1, 6, 8, 6, 5, 6], "mirror reads test_event_reader.log")
    check(termination(events[5]) == ("exited", 0), "mirror reads the normal termination")
    aborted = condor_parse_event_log(open(os.path.join(FIXTURES, "htcondor", "job_core_copytospool_van.log")).read())
    check([e["code"] for e in aborted] == [0, 9, 0, 9], "mirror reads job_core_copytospool_van.log")
    ads = condor_parse_ads(open(os.path.join(FIXTURES, "htcondor", "condor_q-completed.json")).read())
    check(ads[0]["exit_code"] == 0 and ads[0]["node"] == "fnpc1234.fnal.gov", "mirror reads the completed ad")
    text = open(os.path.join(FIXTURES, "jobsub", "jq_out.txt")).read()
    check(len(jobsub_parse_queue(text)) == len([l for l in text.splitlines() if l.strip()]),
          "mirror reads jq_out.txt")


def scenario_no_state_dir():
    env = dict(os.environ)
    env.pop("PRODOPS_STANDIN_STATE", None)
    p = subprocess.run([os.path.join(HERE, "condor_q"), "-json"], capture_output=True, text=True, env=env)
    check(p.returncode == 2 and "standin: set PRODOPS_STANDIN_STATE" in p.stderr, "no state dir: exit 2", p.stderr)


def scenario_condor_lifecycle():
    env = Env()
    try:
        exe = env.script("job.sh", '#!/bin/sh\necho "arg=$1"\necho "to stderr" >&2\nsleep 0.6\nexit "$1"\n')
        sub = env.submit_file("job.sub", description(env, exe, 3))
        p = env.run("condor_submit", sub)
        check(p.stdout == "Submitting job(s)...\n3 job(s) submitted to cluster 1.\n", "condor_submit output", p.stdout)
        check(condor_parse_submit(p.stdout) == (1, 3), "parse_submit reads condor_submit")
        check(p.elapsed < 1.0, f"condor_submit returns at once ({p.elapsed:.3f} s)")
        print(f"  condor_submit took {p.elapsed * 1000:.0f} ms")

        env.wait("all 3 running", lambda: all(env.status(1, i) == 2 for i in range(3)))
        ads = env.ads("condor_q", "-attributes",
                      "ClusterId,ProcId,JobStatus,RemoteHost,MachineAttrGLIDEIN_Site0,NumJobStarts,GlobalJobId", "1")
        check(len(ads) == 3 and all(a["status"] == 2 for a in ads), "condor_q shows 3 running", ads)
        check(all(a["node"] == "standin.local" and a["site"] == "Standin_Site" for a in ads), "node and site", ads)
        check(all(a["starts"] == 1 for a in ads), "NumJobStarts 1", ads)
        check(all(re.fullmatch(r"standin\.local#1\.\d#\d+", a["global_id"]) for a in ads), "GlobalJobId", ads)
        raw = json.loads(env.run("condor_q", "-json", "-attributes", "JobStatus,Bogus", "1.1").stdout)
        check(raw == [{"ClusterId": 1, "JobStatus": 2, "ProcId": 1}], "-attributes keeps only those + ids", raw)
        check(env.run("condor_history", "-json", "1").stdout == "", "nothing in history while running")

        env.wait("all 3 done", lambda: all(env.status(1, i) == 4 for i in range(3)))
        check(env.run("condor_q", "-json", "1").stdout == "", "condor_q prints nothing when no jobs")
        hist = env.ads("condor_history", "-attributes",
                       "ClusterId,ProcId,JobStatus,ExitCode,ExitBySignal,RemoteWallClockTime,RemoteUserCpu,"
                       "ResidentSetSize,LastRemoteHost", "1")
        check(sorted((a["proc"], a["exit_code"]) for a in hist) == [(0, 0), (1, 1), (2, 2)], "exit codes", hist)
        check(all(a["status"] == 4 and a["wall"] >= 0.5 and isinstance(a["wall"], float) for a in hist),
              "completed with wall time", hist)
        check(all(a["rss"] and a["rss"] > 0 and a["cpu"] is not None for a in hist), "rss and cpu", hist)
        check(all(a["node"] == "standin.local" for a in hist), "LastRemoteHost", hist)
        for i in range(3):
            with open(os.path.join(env.work, f"1.{i}.out")) as f:
                check(f.read() == f"arg={i}\n", f"1.{i}.out holds the job's stdout")
            with open(os.path.join(env.work, f"1.{i}.err")) as f:
                check(f.read() == "to stderr\n", f"1.{i}.err holds the job's stderr")
        log = os.path.join(env.work, "events.log")
        check_log_layout(log)
        events = env.events(log)
        for i in range(3):
            codes = [e["code"] for e in events if e["proc"] == i]
            check(codes == [0, 1, 5], f"events of 1.{i}", codes)
        states = job_states(events)
        check({k: (v["status"], v["exit_code"]) for k, v in states.items()} ==
              {(1, 0): (4, 0), (1, 1): (4, 1), (1, 2): (4, 2)}, "job_states from the log", states)

        # queries by batch name, regexp, history limit; unsupported constraint.
        by_name = env.ads("condor_history", "-constraint", 'JobBatchName == "prodops-check"', "-limit", "1")
        check(len(by_name) == 1 and by_name[0]["cluster"] == 1, "history by batch name, limit 1", by_name)
        check(len(env.ads("condor_history", "-constraint", 'regexp("^prodops-", JobBatchName)')) == 3, "regexp")
        check(env.ads("condor_history", "-constraint", 'JobBatchName == "other"') == [], "other batch: none")
        bad = env.run("condor_q", "-json", "-constraint", "Owner =!= undefined", ok=False)
        check(bad.returncode == 1 and "Error: unsupported constraint in stand-in" in bad.stderr, "bad constraint")
    finally:
        env.close()


def scenario_concurrent_submits():
    env = Env()
    try:
        exe = env.script("quick.sh", "#!/bin/sh\nexit 0\n")
        sub = env.submit_file("q.sub", description(env, exe, 2))
        procs = [subprocess.Popen(["condor_submit", sub], stdout=subprocess.PIPE, text=True, env=env.env,
                                  cwd=env.work) for _ in range(4)]
        clusters = sorted(condor_parse_submit(p.communicate()[0])[0] for p in procs)
        check(clusters == [1, 2, 3, 4], "concurrent submits get distinct clusters", clusters)
        env.wait("8 jobs done", lambda: len(env.ads("condor_history")) == 8)
        check_log_layout(os.path.join(env.work, "events.log"))
        check(len(env.events(os.path.join(env.work, "events.log"))) == 24, "24 records (000, 001, 005 each)")
    finally:
        env.close()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def scenario_condor_control():
    env = Env()
    try:
        exe = env.script("long.sh", '#!/bin/sh\necho $$ > "pid.$1"\nsleep "${2:-30}" &\nwait\necho done\n')
        sub = env.submit_file("long.sub", description(env, exe, 4, args="$(Process) 4"))
        env.run("condor_submit", sub)
        env.wait("4 running", lambda: all(env.status(1, i) == 2 for i in range(4)))
        scratch = os.path.join(env.state, "scratch")
        pids = {i: int(env.wait(f"pid of 1.{i}", lambda i=i: _read(os.path.join(scratch, f"1.{i}", f"pid.{i}"))))
                for i in range(4)}

        # condor_rm a running job: killed, removed, 009.
        p = env.run("condor_rm", "1.0")
        check(p.stdout.strip() == "Job 1.0 marked for removal", "condor_rm message", p.stdout)
        check(env.status(1, 0) == 3, "removed")
        env.wait("1.0's process gone", lambda: not alive(pids[0]))
        # condor_hold a running job: killed, held; release: runs again from scratch.
        p = env.run("condor_hold", "1.1")
        check(p.stdout.strip() == "Job 1.1 held", "condor_hold message", p.stdout)
        env.wait("1.1's process gone", lambda: not alive(pids[1]))
        held = env.ads("condor_q", "1.1")[0]
        check(held["status"] == 5 and held["hold_code"] == 1 and held["hold_subcode"] == 0
              and held["hold_reason"] == "via condor_hold (by user prodops)", "held ad", held)
        # condor_suspend / condor_continue.
        p = env.run("condor_suspend", "1.2")
        check(p.stdout.strip() == "Job 1.2 suspended", "condor_suspend message", p.stdout)
        check(env.ads("condor_q", "1.2")[0]["status"] == 7, "suspended")
        env.wait("1.2 stopped", lambda: proc_state(pids[2]) == "T")
        time.sleep(2.0)
        check(env.status(1, 2) == 7 and alive(pids[2]), "a suspended job does not finish")
        p = env.run("condor_continue", "1.2")
        check(p.stdout.strip() == "Job 1.2 continued", "condor_continue message", p.stdout)
        check(env.status(1, 2) == 2, "running again")
        # wrong states and unknown ids.
        p = env.run("condor_release", "1.3", ok=False)
        check(p.returncode == 1 and "Job 1.3 not held to be released" in p.stderr, "release a running job", p.stderr)
        p = env.run("condor_rm", "99", ok=False)
        check(p.returncode == 1 and "Couldn't find/remove all jobs in cluster 99" in p.stderr, "rm unknown", p.stderr)
        p = env.run("condor_rm", "1.0", "99.0", ok=False)
        check(p.returncode == 1 and "Job 1.0 not found" in p.stderr, "rm a removed job", p.stderr)

        p = env.run("condor_release", "1.1")
        check(p.stdout.strip() == "Job 1.1 released", "condor_release message", p.stdout)
        env.wait("1.1 done", lambda: env.status(1, 1) == 4)
        env.wait("1.2 done", lambda: env.status(1, 2) == 4)
        env.wait("1.3 done", lambda: env.status(1, 3) == 4)
        hist = {a["proc"]: a for a in env.ads("condor_history", "1")}
        check(hist[0]["status"] == 3, "1.0 removed in history", hist)
        check(hist[1]["exit_code"] == 0 and hist[1]["starts"] == 2, "1.1 ran twice and finished", hist[1])
        check(hist[2]["exit_code"] == 0 and hist[2]["starts"] == 1, "1.2 finished after continue", hist[2])
        raw = json.loads(env.run("condor_history", "-json", "1.0").stdout)[0]
        check(raw["RemoveReason"] == "via condor_rm (by user prodops)", "RemoveReason", raw)

        log = os.path.join(env.work, "events.log")
        check_log_layout(log)
        events = env.events(log)
        codes = {i: [e["code"] for e in events if e["proc"] == i] for i in range(4)}
        check(codes[0] == [0, 1, 9], "1.0 events", codes)
        check(codes[1] == [0, 1, 12, 13, 1, 5], "1.1 events", codes)
        check(codes[2] == [0, 1, 10, 11, 5], "1.2 events", codes)
        check(codes[3] == [0, 1, 5], "1.3 events", codes)
        aborted = [e for e in events if e["code"] == 9][0]
        check(aborted["detail"] == ["via condor_rm (by user prodops)"], "009 reason line", aborted)
        held_event = [e for e in events if e["code"] == 12][0]
        check(hold_of(held_event) == ("via condor_hold (by user prodops)", (1, 0)), "012 reason and codes")
        states = job_states(events)
        check([states[(1, i)]["status"] for i in range(4)] == [3, 4, 4, 4], "job_states", states)

        # a whole cluster; an idle job held and released (start delay).
        exe2 = env.script("short.sh", "#!/bin/sh\nexit 3\n")
        env.run("condor_submit", env.submit_file("d.sub", description(env, exe2, 2, log="delay.log")),
                env={"PRODOPS_STANDIN_START_DELAY": "1.5"})
        p = env.run("condor_hold", "2")
        check(p.stdout.strip() == "All jobs in cluster 2 have been held", "hold a cluster", p.stdout)
        check(all(a["status"] == 5 for a in env.ads("condor_q", "2")), "cluster 2 held")
        time.sleep(2.0)
        check(all(env.status(2, i) == 5 for i in range(2)), "held idle jobs do not start")
        p = env.run("condor_release", "2")
        check(p.stdout.strip() == "All jobs in cluster 2 have been released", "release a cluster", p.stdout)
        env.wait("cluster 2 done", lambda: all(env.status(2, i) == 4 for i in range(2)))
        check(sorted(a["exit_code"] for a in env.ads("condor_history", "2")) == [3, 3], "exit 3")
        codes = [e["code"] for e in env.events(os.path.join(env.work, "delay.log")) if e["proc"] == 0]
        check(codes == [0, 12, 13, 1, 5], "idle hold/release events", codes)
    finally:
        env.close()


def _read(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return text or None
    except OSError:
        return None


def scenario_signals_policies_and_errors():
    env = Env()
    try:
        # killed by a signal
        exe = env.script("die.sh", "#!/bin/sh\nkill -9 $$\n")
        env.run("condor_submit", env.submit_file("die.sub", description(env, exe, 1, log="die.log")))
        env.wait("1.0 done", lambda: env.status(1, 0) == 4)
        ad = env.ads("condor_history", "1")[0]
        check(ad["exit_code"] is None and ad["exit_signal"] == 9, "killed by signal 9", ad)
        raw = json.loads(env.run("condor_history", "-json", "1").stdout)[0]
        check(raw["ExitBySignal"] is True and "ExitCode" not in raw, "ExitBySignal, no ExitCode", raw)
        term = [e for e in env.events(os.path.join(env.work, "die.log")) if e["code"] == 5][0]
        check(termination(term) == ("signalled", 9), "005 abnormal termination", term)
        check_log_layout(os.path.join(env.work, "die.log"))

        # over its memory request: held with code 34
        hog = env.script("hog.py", "#!/usr/bin/python3\nimport time\nx = bytearray(60 * 1024 * 1024)\n"
                                   "for i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(20)\n")
        env.run("condor_submit", env.submit_file("hog.sub", description(
            env, hog, 1, log="hog.log", extra=["request_memory = 20"])))
        env.wait("2.0 held", lambda: env.status(2, 0) == 5)
        ad = env.ads("condor_q", "2")[0]
        check(ad["hold_code"] == 34 and "memory limit of 20 megabytes" in ad["hold_reason"], "memory hold", ad)
        # over its wall time (periodic_hold)
        slow = env.script("slow.sh", "#!/bin/sh\nsleep 30\n")
        env.run("condor_submit", env.submit_file("slow.sub", description(env, slow, 1, log="slow.log", extra=[
            "periodic_hold = (JobStatus == 2) && (time() - EnteredCurrentStatus > 1)",
            'periodic_hold_reason = "over its wall-time limit of 1 s"'])))
        env.wait("3.0 held", lambda: env.status(3, 0) == 5)
        ad = env.ads("condor_q", "3")[0]
        check(ad["hold_code"] == 3 and ad["hold_reason"] == "over its wall-time limit of 1 s", "wall hold", ad)
        env.run("condor_rm", "2", "3")
        check(env.status(2, 0) == 3 and env.status(3, 0) == 3, "held jobs removed")

        # errors
        p = env.run("condor_submit", env.submit_file("nox.sub", description(env, "/no/such/exe", 1)), ok=False)
        check(p.returncode == 1 and "ERROR: Executable file /no/such/exe does not exist" in p.stderr, "no exe",
              p.stderr)
        lines = [l for l in description(env, exe, 1) if not l.startswith("queue")]
        p = env.run("condor_submit", env.submit_file("noq.sub", lines), ok=False)
        check(p.returncode == 1 and "queue" in p.stderr, "no queue statement", p.stderr)

        # failure trigger: 2 failures, then success; nothing queued meanwhile
        with open(os.path.join(env.state, "fail-submits"), "w") as f:
            f.write("2\n")
        quick = env.script("quick.sh", "#!/bin/sh\nexit 0\n")
        sub = env.submit_file("ok.sub", description(env, quick, 1, log="ok.log"))
        p = env.run("condor_submit", sub, ok=False)
        check(p.returncode == 1 and "ERROR: Failed to connect to local queue manager" in p.stderr
              and "AUTHENTICATE:1003:Failed to authenticate with any method" in p.stderr, "condor_submit fails",
              p.stderr)
        p = env.run("jobsub_submit", "-G", "dune", "file://" + quick, ok=False)
        check(p.returncode == 1 and "Error: condor_submit exited with failed status code 1" in p.stderr,
              "jobsub_submit fails", p.stderr)
        check(_read(os.path.join(env.state, "fail-submits")) == "0", "trigger used up")
        p = env.run("condor_submit", sub)
        check(condor_parse_submit(p.stdout) == (4, 1), "next submit works, no cluster used by failures", p.stdout)
        check(not os.path.exists(os.path.join(env.state, "jobs", "5.0.json")), "failed submits queued nothing")
    finally:
        env.close()


def scenario_jobsub():
    env = Env(GROUP="", JOBSUB_GROUP="")
    try:
        script = env.script("js.sh", '#!/bin/sh\necho "proc=$PROCESS cluster=$CLUSTER id=$JOBSUBJOBID '
                                     'args=$* foo=$FOO"\necho oops >&2\nsleep 1\nexit $PROCESS\n')
        p = env.run("jobsub_submit", "file://" + script, ok=False)
        check(p.returncode == 2 and "the following arguments are required: -G/--group" in p.stderr, "no group",
              p.stderr)
        p = env.run("jobsub_submit", "-G", "dune", script, ok=False)
        check(p.returncode != 0 and "file://" in p.stderr, "not a file:// executable", p.stderr)
        p = env.run("jobsub_submit", "-G", "dune", "file:///no/such.sh", ok=False)
        check(p.returncode == 1 and "does not exist" in p.stderr, "missing script", p.stderr)

        argv = ["-G", "dune", "--role", "Production", "-N", "2", "--memory", "2000MB", "--disk", "10GB",
                "--expected-lifetime", "3h", "--cpu", "1", "--resource-provides=usage_model=OPPORTUNISTIC",
                "--site", "FNAL", "--blacklist", "Bad", "-l", '+Foo="bar"', "-e", "FOO",
                "--auth-methods", "token", "file://" + script, "one", "two words"]
        p = env.run("jobsub_submit", *argv, env={"FOO": "passed"})
        check(p.elapsed < 1.0, f"jobsub_submit returns at once ({p.elapsed:.3f} s)")
        ids = jobsub_parse_submit(p.stdout)
        check(ids == ["1.0@jobsub01.fnal.gov", "1.1@jobsub01.fnal.gov"], "parse_submit reads jobsub_submit", p.stdout)
        check("Use job id 1.0@jobsub01.fnal.gov to retrieve output" in p.stdout, "jobsub_submit output")
        with open(os.path.join(env.state, "jobsub", "1.argv.json")) as f:
            check(json.load(f) == argv, "argv recorded")
        x = env.job(1, 0)["x"]
        check((x["group"], x["role"]) == ("dune", "Production"), "group and role recorded", x)

        env.wait("both running", lambda: all(env.status(1, i) == 2 for i in range(2)))
        q = env.run("jobsub_q", "-G", "dune").stdout
        jobs = jobsub_parse_queue(q)
        check([(j["id"], j["status"]) for j in jobs] == [("1.0@jobsub01.fnal.gov", "R"),
                                                          ("1.1@jobsub01.fnal.gov", "R")], "jobsub_q", q)
        check(jobs[0]["owner"] == "prodops" and jobs[0]["command"].startswith("js.sh one two"), "owner, command", q)
        check(q.splitlines()[0].startswith("JOBSUBJOBID") and
              q.splitlines()[-1] == "2 total; 0 completed, 0 removed, 0 idle, 2 running, 0 held, 0 suspended",
              "header and totals", q)
        row = q.splitlines()[1]
        check(re.fullmatch(r"1\.0@jobsub01\.fnal\.gov {19}prodops   \t\d\d/\d\d \d\d:\d\d   0\+00:00:0\d R    0 "
                           r"+\d+\.\d js\.sh one two words", row) is not None, "row layout like jq_out.txt", row)
        one = jobsub_parse_queue(env.run("jobsub_q", "-G", "dune", "-J", "1.1@jobsub01.fnal.gov").stdout)
        check([j["id"] for j in one] == ["1.1@jobsub01.fnal.gov"], "jobsub_q -J", one)
        check(jobsub_parse_queue(env.run("jobsub_q", "-G", "nova").stdout) == [], "other group sees nothing")
        p = env.run("jobsub_q", ok=False)
        check(p.returncode == 1 and "needs -G group" in p.stderr, "jobsub_q without a group", p.stderr)

        env.wait("both done", lambda: all(env.status(1, i) == 4 for i in range(2)))
        q = env.run("jobsub_q", "-G", "dune").stdout
        check(jobsub_parse_queue(q) == [] and q.splitlines()[-1].startswith("0 total;"), "finished jobs leave", q)
        for i in range(2):
            with open(os.path.join(env.state, "jobsub", f"1.{i}.out")) as f:
                check(f.read() == f"proc={i} cluster=1 id=1.{i}@jobsub01.fnal.gov args=one two words foo=passed\n",
                      f"1.{i} output")
        hist = condor_parse_ads(env.run("condor_history", "-json", "1").stdout)
        check(sorted((a["proc"], a["exit_code"]) for a in hist) == [(0, 0), (1, 1)], "jobsub exit codes", hist)
        raw = json.loads(env.run("condor_history", "-json", "1.0").stdout)[0]
        check(raw["Jobsub_Group"] == "dune" and raw["RequestMemory"] == 2000 and raw["Foo"] == "bar"
              and raw["DESIRED_usage_model"] == "OPPORTUNISTIC" and raw["DESIRED_Sites"] == "FNAL", "jobsub ad", raw)

        out = os.path.join(env.dir, "logs")
        env.run("jobsub_fetchlog", "-G", "dune", "-J", "1.1@jobsub01.fnal.gov", "--unzipdir", out)
        names = sorted(os.listdir(out))
        check(len(names) == 4 and "js.sh" in names, "fetchlog files", names)
        pattern = r"js\.sh_\d{8}_\d{6}_[0-9a-f-]{36}cluster\.1\.1\.(out|err|log)"
        check(all(re.fullmatch(pattern, n) for n in names if n != "js.sh"), "bundle names", names)
        with open(os.path.join(out, [n for n in names if n.endswith(".out")][0])) as f:
            check(f.read().startswith("proc=1 "), "bundle stdout")
        with open(os.path.join(out, [n for n in names if n.endswith(".err")][0])) as f:
            check(f.read() == "oops\n", "bundle stderr")
        with open(os.path.join(out, [n for n in names if n.endswith(".log")][0])) as f:
            check([e["code"] for e in condor_parse_event_log(f.read())] == [0, 1, 5], "bundle event log")
        dest = os.path.join(env.dir, "tgz")
        env.run("jobsub_fetchlog", "-G", "dune", "-J", "1.0@jobsub01.fnal.gov", "--destdir", dest)
        with tarfile.open(os.path.join(dest, "1.0@jobsub01.fnal.gov.tgz")) as tar:
            check(len(tar.getnames()) == 4, "tgz holds the bundle", tar.getnames())
        p = env.run("jobsub_fetchlog", "-G", "dune", "-J", "9.0@jobsub01.fnal.gov", "--unzipdir", out, ok=False)
        check(p.returncode == 1 and "9.0@jobsub01.fnal.gov" in p.stderr, "fetchlog unknown job", p.stderr)

        # jobsub_hold / release / rm on a long job
        long = env.script("long.sh", "#!/bin/sh\nsleep 30\n")
        env.run("jobsub_submit", "-G", "dune", "-N", "2", "file://" + long)
        env.wait("2.x running", lambda: all(env.status(2, i) == 2 for i in range(2)))
        p = env.run("jobsub_hold", "-G", "dune", "-J", "2.0@jobsub01.fnal.gov")
        check("Job 2.0 held" in p.stdout, "jobsub_hold", p.stdout)
        q = jobsub_parse_queue(env.run("jobsub_q", "-G", "dune").stdout)
        check([(j["id"], j["status"]) for j in q] == [("2.0@jobsub01.fnal.gov", "H"), ("2.1@jobsub01.fnal.gov", "R")],
              "held and running", q)
        env.run("jobsub_release", "-G", "dune", "-J", "2.0@jobsub01.fnal.gov")
        env.wait("2.0 running again", lambda: env.status(2, 0) == 2)
        p = env.run("jobsub_rm", "-G", "dune", "-J", "2@jobsub01.fnal.gov")
        check("All jobs in cluster 2 have been marked for removal" in p.stdout, "jobsub_rm a cluster", p.stdout)
        check(jobsub_parse_queue(env.run("jobsub_q", "-G", "dune").stdout) == [], "removed jobs leave the queue")
        check(all(env.status(2, i) == 3 for i in range(2)), "removed")
    finally:
        env.close()


def main():
    scenarios = [
        scenario_mirrors_read_the_samples,
        scenario_no_state_dir,
        scenario_condor_lifecycle,
        scenario_concurrent_submits,
        scenario_condor_control,
        scenario_signals_policies_and_errors,
        scenario_jobsub,
    ]
    failed = 0
    for scenario in scenarios:
        name = scenario.__name__[len("scenario_"):]
        t = time.time()
        try:
            scenario()
            print(f"ok    {name} ({time.time() - t:.1f} s)")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}")
    print(f"{CHECKS} checks, {failed} scenario(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
