//go:build !unix

package listeners

import "io/fs"

func dirKeyOf(_ fs.FileInfo, path string) dirKey { return dirKey{path: path} }
