package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Options tune NewClusterWith for fault-injection tests; the zero value is
// NewCluster.
type Options struct {
	// Env is added to every node's environment (UDMG_* overrides).
	Env []string
	// NodeEnv, when set, adds settings for node i (0-based) after Env.
	NodeEnv func(i int, p *Proc) []string
	// UIDs runs each node as its own uid and gid (setpriv), with its
	// DataDir owned by it, so that Firewall can match its packets. The
	// nodes keep CAP_DAC_OVERRIDE, CAP_FOWNER and CAP_CHOWN: they share
	// GatewayHome and each must reach the files the others wrote.
	UIDs bool
	// LoopDataDirs puts each node's DataDir on its own loop-mounted ext4
	// (Proc.DataFS), which LoopFS.Freeze can stall.
	LoopDataDirs bool
	// LoopHome puts GatewayHome on its own loop-mounted ext4 (Cluster.HomeFS).
	LoopHome bool
	// LoopSize is the size of each loop file system (default 256 MiB).
	LoopSize int64
	// LicenseNodes is how many nodes the license is for (default: all).
	LicenseNodes int
	// Binary is the udmg-server the nodes start on (default ServerBinary:
	// this tree; ReleaseBinary builds an earlier release).
	Binary string
	// Dir is where the cluster's directory (DataDirs, GatewayHome, logs)
	// is made (default os.TempDir()); /dev/shm keeps the nodes off the
	// disk that the other test packages share.
	Dir string
}

// FaultsAvailable says why Options.UIDs, LoopDataDirs or LoopHome cannot be
// used here ("" when they can).
func (o Options) FaultsAvailable() string {
	if o.LoopDataDirs || o.LoopHome {
		if why := LoopFSAvailable(); why != "" {
			return why
		}
	}
	if o.UIDs {
		if os.Geteuid() != 0 {
			return "running nodes as their own uid needs root"
		}
		if _, err := exec.LookPath("setpriv"); err != nil {
			return "setpriv (util-linux) is missing"
		}
	}
	return ""
}

// nodeUID is the uid node index i (1-based) of the cluster on subnet
// 127.0.X. runs as: unique per subnet, so concurrent clusters differ.
func nodeUID(subnet string, i int) int {
	var x int
	fmt.Sscanf(strings.TrimPrefix(subnet, "127.0."), "%d", &x)
	return 40000 + x*16 + i
}

// prepare applies the fault options to c before its nodes start.
func (c *Cluster) prepare(o Options) error {
	size := o.LoopSize
	if size == 0 {
		size = 256 << 20
	}
	if o.LoopHome {
		fs, err := MountLoopFS(c.Home, size)
		if err != nil {
			return err
		}
		c.HomeFS = fs
	}
	for i, p := range c.Nodes {
		if o.NodeEnv != nil {
			p.env = append(p.env, o.NodeEnv(i, p)...)
		}
		if o.LoopDataDirs {
			fs, err := MountLoopFS(p.DataDir, size)
			if err != nil {
				return err
			}
			p.DataFS = fs
		}
		if o.UIDs {
			subnet := p.IP[:strings.LastIndexByte(p.IP, '.')+1]
			p.UID = nodeUID(subnet, i+1)
			if err := os.MkdirAll(p.DataDir, 0o700); err != nil {
				return err
			}
			if err := os.Chown(p.DataDir, p.UID, p.UID); err != nil {
				return err
			}
		}
	}
	if o.UIDs {
		if err := os.MkdirAll(c.Home, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// thawAll lets every frozen file system of c go, so that processes blocked
// on one can be killed.
func (c *Cluster) thawAll() {
	if c.HomeFS != nil {
		c.HomeFS.Thaw()
	}
	for _, p := range c.Nodes {
		if p.DataFS != nil {
			p.DataFS.Thaw()
		}
	}
}

// unmountAll closes c's loop file systems (after its processes are gone).
func (c *Cluster) unmountAll() []error {
	var errs []error
	for _, p := range c.Nodes {
		if p.DataFS != nil {
			if err := p.DataFS.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if c.HomeFS != nil {
		if err := c.HomeFS.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// command is the process to run: the binary itself, or the binary under
// setpriv as the node's own uid.
func (p *Proc) command() *exec.Cmd {
	if p.UID == 0 {
		return exec.Command(p.bin)
	}
	caps := "+dac_override,+fowner,+chown"
	cmd := exec.Command("setpriv", fmt.Sprintf("--reuid=%d", p.UID), fmt.Sprintf("--regid=%d", p.UID), "--clear-groups",
		"--inh-caps="+caps, "--ambient-caps="+caps, "--", p.bin)
	// setpriv execs the binary: the pid and its signals are the node's.
	return cmd
}

// Stop freezes the process (SIGSTOP), as a paused VM; Cont wakes it.
func (p *Proc) Stop() { p.Signal(syscall.SIGSTOP) }

// Cont resumes a stopped process (SIGCONT).
func (p *Proc) Cont() { p.Signal(syscall.SIGCONT) }

// Term asks the process to shut down gracefully (SIGTERM).
func (p *Proc) Term() { p.Signal(syscall.SIGTERM) }

// Running reports whether the last started run has not exited yet.
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// HealAll ends every fault injected into c (and through fw when not nil):
// it thaws the file systems, wakes stopped nodes and drops every cut. Nodes
// that exited stay down; restart them with Start.
func (c *Cluster) HealAll(fw *Firewall) error {
	c.thawAll()
	for _, p := range c.Nodes {
		p.Cont()
	}
	if fw != nil {
		return fw.Heal()
	}
	return nil
}
