package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrTimeout marks an EXEC killed at its timeout.
var ErrTimeout = errors.New("killed at its timeout")

const (
	// execDefaultTimeout bounds an EXEC given neither delay nor timeout.
	execDefaultTimeout = 5 * time.Minute
	// outputLimit bounds what EXEC keeps of a program's output (the head;
	// the rest is counted).
	outputLimit = 16 << 10
)

// execPath is the child's PATH, and where a bare program name is looked
// up: the child does not inherit the gateway's environment (it may hold
// secrets), only PATH, LANG and the UDMG_* facts.
var execPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

func init() {
	specs["EXEC"] = kindSpec{
		args: []arg{
			{name: "path", kind: kString, required: true},
			{name: "args", kind: kStrings, secrets: true},
			{name: "delay", kind: kNumber},
			{name: "timeout", kind: kDuration},
		},
		run: runExec,
	}
}

// EXEC {"path", "args", "delay", "timeout"}: run a program in GatewayHome.
// path is absolute, relative to GatewayHome when it holds a "/", or a bare
// name looked up in execPath; args is a string split on spaces (no shell
// quoting) or a list. The program is killed, with its whole process group,
// after timeout (a Go duration), else delay (Waarp's maximum run time in
// milliseconds), else execDefaultTimeout. Its stdout and stderr, together,
// are Result.Output (the first outputLimit bytes). A non-zero exit fails the
// task. At-least-once: a crash after the program ran runs it again.
func runExec(ctx context.Context, c *call) (Result, error) {
	prog, err := c.program(c.args.str("path"))
	if err != nil {
		return Result{}, err
	}
	var argv []string
	if s, ok := c.args["args"].(string); ok {
		argv = strings.Fields(s)
	} else {
		argv = c.args.strs("args")
	}
	timeout := execDefaultTimeout
	if ms := c.args.num("delay", 0); ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	timeout = c.args.duration("timeout", timeout)

	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, prog, argv...)
	cmd.Dir = c.env.Home
	cmd.Env = []string{"PATH=" + strings.Join(execPath, ":"), "LANG=C.UTF-8"}
	for _, f := range c.facts.fields(c.env.Home) {
		cmd.Env = append(cmd.Env, "UDMG_"+f.env+"="+f.value)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild keeping the output pipe open must not hold Wait.
	cmd.WaitDelay = time.Second
	out := &headWriter{limit: outputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	res := Result{Output: out.String()}
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s: %w", prog, ctx.Err())
	case runCtx.Err() != nil:
		return res, fmt.Errorf("%s: %w %s", prog, ErrTimeout, timeout)
	case err != nil:
		return res, fmt.Errorf("%s: %w; output: %s", prog, err, lastLine(res.Output))
	}
	return res, nil
}

// program resolves EXEC's path.
func (c *call) program(p string) (string, error) {
	switch {
	case filepath.IsAbs(p):
		return p, nil
	case strings.Contains(p, "/"):
		rel, err := c.path("path", p)
		if err != nil {
			return "", err
		}
		return filepath.Join(c.env.Home, rel), nil
	}
	for _, dir := range execPath {
		full := filepath.Join(dir, p)
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return full, nil
		}
	}
	return "", fmt.Errorf("path: program %q not found in %s", p, strings.Join(execPath, ":"))
}

// headWriter keeps the first limit bytes written and counts the rest.
type headWriter struct {
	limit   int
	buf     bytes.Buffer
	dropped int
}

func (w *headWriter) Write(p []byte) (int, error) {
	room := w.limit - w.buf.Len()
	if room >= len(p) {
		w.buf.Write(p)
	} else {
		w.buf.Write(p[:max(room, 0)])
		w.dropped += len(p) - max(room, 0)
	}
	return len(p), nil
}

func (w *headWriter) String() string {
	if w.dropped > 0 {
		return fmt.Sprintf("%s\n[%d more bytes not kept]", w.buf.String(), w.dropped)
	}
	return w.buf.String()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "(none)"
	}
	return s
}
