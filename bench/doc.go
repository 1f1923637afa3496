// Package bench holds the MFT figures of the issue as a reproducible
// measurement (make bench): SFTP through the gateway against OpenSSH's
// sftp-server, FTP against vsftpd (and cp, the disk), 100 concurrent
// SFTP uploads, what checkpoints cost a client-mode push, and small files (-only=small: 16
// sessions of 4 KiB files against OpenSSH's internal-sftp and the disk's
// create+write+fsync limit, with each server's CPU per file; -small-cluster
// adds a 3-node cluster, -small-state=large the gateway's rounds again on
// the large state, -perf the gateway's profile and syscalls per
// file; each round starts with another side, and a run first waits out
// the inodes a run before it freed, see settleFreedInodes). It runs real
// node processes and the
// stock clients (testsupport), takes minutes, and is skipped unless the
// test binary gets -figures, so make test does not run it. The mixed soak
// (-only=soak, -soak-for, -soak-state=large on the large state:
// small files, SFTP logins, API polling and large uploads at once, with
// the lease renewals meanwhile) runs only when named.
package bench
