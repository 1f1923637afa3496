package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DataDir holds the node's Raft log and snapshots, the embedded database,
// its identity and keys: nobody but the node's own user reads it.
const (
	dataDirPerm  fs.FileMode = 0o700
	dataFilePerm fs.FileMode = 0o600
)

// secureDataDir creates dir (0700) if needed and tightens what is already
// in it: directories to 0700, files to 0600 (a DataDir written by an
// earlier release, or files the libraries create with 0644 such as the
// SQLite database and Raft's snapshots). Symbolic links are left alone. It
// runs at start-up, before and after the node opens its files; with the
// directory itself 0700, a file created later with a wider mode is still
// out of others' reach. A directory in keep (GatewayHome, should it lie
// inside DataDir) is left as it is, with all it holds.
func secureDataDir(dir string, keep ...string) error {
	if err := os.MkdirAll(dir, dataDirPerm); err != nil {
		return fmt.Errorf("[cluster] DataDir %s: %w", dir, err)
	}
	skip := map[string]bool{}
	for _, k := range keep {
		if abs, err := filepath.Abs(k); err == nil {
			skip[abs] = true
		}
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() && len(skip) > 0 {
			if abs, aerr := filepath.Abs(path); aerr == nil && skip[abs] {
				return filepath.SkipDir
			}
		}
		if err != nil {
			if path != dir && os.IsNotExist(err) {
				return nil // removed meanwhile (a snapshot being replaced)
			}
			return fmt.Errorf("[cluster] DataDir %s: %w", dir, err)
		}
		var want fs.FileMode
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			want = dataDirPerm
		case d.Type().IsRegular():
			want = dataFilePerm
		default:
			return nil // sockets, pipes: not ours to change
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return fmt.Errorf("[cluster] DataDir %s: %w", path, err)
		}
		if info.Mode().Perm() != want {
			if err := os.Chmod(path, want); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("[cluster] DataDir: tighten %s to %o: %w", path, want, err)
			}
		}
		return nil
	})
}

// precreate makes an empty file at path (0600) unless one exists, so that
// a library that would create it 0644 (SQLite: its database, and the WAL
// and shared-memory files that take the database's mode) finds it made.
func precreate(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, dataFilePerm)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("[cluster] DataDir: create %s: %w", path, err)
	}
	return f.Close()
}
