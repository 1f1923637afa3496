package tasks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExec runs real programs: the facts in the environment, nothing of
// the gateway's own environment, Waarp's string args, a program under
// GatewayHome, a failing exit and bounded output.
func TestExec(t *testing.T) {
	t.Setenv("UDMG_TEST_SECRET", "s3cret")
	h := newHome(t)
	h.put("in/a.txt", "x")
	f := facts("in/a.txt")

	r := h.run("EXEC", map[string]any{"path": "/bin/sh", "args": []any{"-c",
		`echo "id=$UDMG_TRANSFER_ID file=$UDMG_FILENAME partner=$UDMG_PARTNER key=$UDMG_TASK_KEY pwd=$(pwd)"; echo to-stderr >&2; env`}}, f)
	want := "id=42 file=a.txt partner=acme key=post/0 pwd=" + h.dir
	if !strings.Contains(r.Output, want) || !strings.Contains(r.Output, "to-stderr") {
		t.Errorf("output %q, want %q and stderr", r.Output, want)
	}
	if strings.Contains(r.Output, "s3cret") {
		t.Error("the gateway's environment reached the program")
	}

	r = h.run("EXEC", map[string]any{"path": "echo", "args": "#TRUEFILENAME# done", "delay": 10000}, f)
	if strings.TrimSpace(r.Output) != "a.txt done" {
		t.Errorf("Waarp-style args: output %q", r.Output)
	}

	h.put("bin/hook.sh", "#!/bin/sh\necho hook \"$1\"\n")
	if err := os.Chmod(filepath.Join(h.dir, "bin/hook.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r = h.run("EXEC", map[string]any{"path": "bin/hook.sh", "args": []any{"#RULE#"}}, f); strings.TrimSpace(r.Output) != "hook inbound" {
		t.Errorf("program under home: output %q", r.Output)
	}
	h.fail("EXEC", map[string]any{"path": "../bin/hook.sh"}, f, "outside GatewayHome")
	h.fail("EXEC", map[string]any{"path": "no-such-program"}, f, `program "no-such-program" not found`)

	_, err := Run(context.Background(), Task{Type: "EXEC", Args: map[string]any{"path": "/bin/sh", "args": []any{"-c", "echo first; echo 'bad input' >&2; exit 3"}}}, f, h.env)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "bad input") {
		t.Errorf("failing program: %v", err)
	}

	r = h.run("EXEC", map[string]any{"path": "/bin/sh", "args": []any{"-c", "head -c 100000 /dev/zero | tr '\\0' x"}}, f)
	if len(r.Output) > outputLimit+100 || !strings.Contains(r.Output, "[83616 more bytes not kept]") {
		t.Errorf("output of %d bytes, tail %q", len(r.Output), r.Output[max(0, len(r.Output)-60):])
	}
}

// TestExecTimeoutKillsGroup: a program that hangs, with a child of its
// own, is killed at its timeout with its whole process group, and the
// error names the timeout; Waarp's delay (ms) bounds it the same way.
func TestExecTimeoutKillsGroup(t *testing.T) {
	h := newHome(t)
	h.put("in/a.txt", "x")
	for _, limit := range []map[string]any{{"timeout": "700ms"}, {"delay": 700}} {
		os.Remove(filepath.Join(h.dir, "pids"))
		args := map[string]any{"path": "/bin/sh", "args": []any{"-c", `sleep 300 & echo $$ $! > pids; wait`}}
		for k, v := range limit {
			args[k] = v
		}
		start := time.Now()
		_, err := Run(context.Background(), Task{Type: "EXEC", Args: args}, facts("in/a.txt"), h.env)
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "killed at its timeout 700ms") {
			t.Fatalf("hanging EXEC (%v): %v", limit, err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("took %v to kill", d)
		}
		for _, pid := range strings.Fields(h.read("pids")) {
			n, _ := strconv.Atoi(pid)
			waitGone(t, n)
		}
	}
}

// waitGone polls until process pid is gone (or a zombie nobody reaps:
// it runs no more).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
