// Package version says which build of the gateway is running: the module
// version, the commit and the Go toolchain, read from the build information
// that `go build` embeds (runtime/debug.ReadBuildInfo), so that an operator
// can tell two binaries apart without knowing how they were built.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is one binary's build identity.
type Info struct {
	Version  string // module version (a tag or pseudo-version); "devel" when the build carries none
	Commit   string // vcs.revision; "devel" when the build carries none (go test, -buildvcs=false, no git)
	Modified bool   // vcs.modified: built from a tree with uncommitted changes
	Go       string // the Go toolchain that built it, e.g. go1.26.8
}

// devel stands for what a build does not record.
const devel = "devel"

// Read is this binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: devel, Commit: devel, Go: runtime.Version()}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts the Info from bi (Read's pure half, for tests).
func FromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, Commit: devel, Go: bi.GoVersion}
	if in.Version == "" || in.Version == "(devel)" {
		in.Version = devel
	}
	if in.Go == "" {
		in.Go = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				in.Commit = s.Value
			}
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// Line is what `udmg-server -version` and `udmgctl version` print, one
// line: "PROGRAM version V commit C[ (modified)] GO".
func (in Info) Line(program string) string {
	commit := in.Commit
	if in.Modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("%s version %s commit %s %s", program, in.Version, commit, in.Go)
}
