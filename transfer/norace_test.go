//go:build !race

package transfer_test

// bigFile is the size of the files of the client-mode tests (the issue's
// 1 GiB); race_test.go makes it smaller under the race detector.
const bigFile int64 = 1 << 30
