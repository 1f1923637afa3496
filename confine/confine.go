// Package confine keeps the users' paths (rule directories, transfer files,
// account homes) away from what the gateway itself must keep: DataDir (the
// Raft log, the node ID, a lone node's key-encryption key) and the key files.
// Paths are compared after making them absolute and resolving every symlink
// of the part that exists, so neither "..", a relative DataDir inside
// GatewayHome nor a symlink gets around it.
package confine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrProtected marks a user path refused because it reaches a protected one.
var ErrProtected = errors.New("no rule, transfer or account may read or write it")

// Guard refuses paths that reach a protected path. The zero value and nil
// refuse nothing (tests without a configuration).
type Guard struct {
	protected []protected
}

type protected struct {
	given, resolved string
}

// New guards paths (absolute or relative to the working directory); empty
// entries are skipped.
func New(paths ...string) (*Guard, error) {
	g := &Guard{}
	for _, p := range paths {
		if p == "" {
			continue
		}
		r, err := Resolve(p)
		if err != nil {
			return nil, fmt.Errorf("protected path %s: %w", p, err)
		}
		g.protected = append(g.protected, protected{given: p, resolved: r})
	}
	return g, nil
}

// Resolve makes path absolute and resolves the symlinks of its longest
// existing prefix; the rest, which does not exist yet, is joined as is.
func Resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; {
		r, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

// Within reports whether path, resolved, is root or lies under it.
func Within(root, path string) (bool, error) {
	r, err := Resolve(root)
	if err != nil {
		return false, err
	}
	p, err := Resolve(path)
	if err != nil {
		return false, err
	}
	return under(r, p), nil
}

func under(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// File refuses a file (or directory) path that is a protected path or
// lies under one.
func (g *Guard) File(path string) error {
	return g.check(path, false)
}

// Tree refuses a directory that a user can roam as a whole (an account's
// home): it must neither reach a protected path nor contain one.
func (g *Guard) Tree(path string) error {
	return g.check(path, true)
}

func (g *Guard) check(path string, tree bool) error {
	if g == nil || len(g.protected) == 0 {
		return nil
	}
	p, err := Resolve(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, pr := range g.protected {
		if under(pr.resolved, p) || (tree && under(p, pr.resolved)) {
			return fmt.Errorf("%s reaches %s: %w", path, pr.given, ErrProtected)
		}
	}
	return nil
}

// Opened refuses a file already opened by path if it is one of the
// protected files (a symlink swapped in after File was checked).
func (g *Guard) Opened(path string, fi os.FileInfo) error {
	if g == nil {
		return nil
	}
	for _, pr := range g.protected {
		if st, err := os.Stat(pr.resolved); err == nil && os.SameFile(st, fi) {
			return fmt.Errorf("%s is %s: %w", path, pr.given, ErrProtected)
		}
	}
	return nil
}
