//go:build unix

package listeners

import (
	"io/fs"
	"syscall"
)

func dirKeyOf(fi fs.FileInfo, path string) dirKey {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return dirKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	}
	return dirKey{path: path}
}
