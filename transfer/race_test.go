//go:build race

package transfer_test

// bigFile is smaller under the race detector, which slows the SFTP client
// about tenfold; the runs without it move 1 GiB.
const bigFile int64 = 256 << 20
