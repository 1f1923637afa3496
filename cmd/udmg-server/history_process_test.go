package main

import (
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

// TestHistoryOnEveryNode: on the embedded database each node keeps its own
// history table; the transfers the ACTIVE archives are copied into the
// PASSIVE node's from the replicated state (the mirror's copyHistory), so
// either node answers the whole history.
func TestHistoryOnEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real nodes")
	}
	c := ts.NewCluster(t, 2)
	active := c.WaitOneActive(40*time.Second, "PASSIVE")
	passive := c.Other(active)
	if err := ts.UploadSFTP(active.SFTPAddr(), "copied.bin", []byte("history on every node"), 15*time.Second); err != nil {
		t.Fatalf("upload: %v", err)
	}
	var last []wire.HistoryItem
	if !ts.Eventually(30*time.Second, func() bool {
		var h struct {
			History []wire.HistoryItem `json:"history"`
		}
		if passive.Admin().Must(t, 200, "GET", "/api/history?limit=100", nil).Decode(&h) != nil {
			return false
		}
		last = h.History
		for _, row := range h.History {
			if strings.HasSuffix(row.LocalPath, "copied.bin") && row.Status == "DONE" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the PASSIVE node's history lacks the ACTIVE's DONE upload of copied.bin: %+v", last)
	}
}
