package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

func init() {
	specs["TRANSFER"] = kindSpec{
		args: []arg{
			{name: "file", kind: kString},
			{name: "to", kind: kString, required: true},
			{name: "as", kind: kString, required: true},
			{name: "rule", kind: kString, required: true},
		},
		run: runTransfer,
	}
}

// ChildKey is the key of the child transfer a TRANSFER task of the parent
// starts: the same on every rerun, so StartChild finds the child a crashed
// run already added.
func ChildKey(parent uint64, taskKey string) string {
	return strconv.FormatUint(parent, 10) + "/" + taskKey
}

// TRANSFER {"file", "to", "as", "rule"}: send file (default the chain's
// file) to partner "to" as remote account "as" with rule "rule", under its
// base name, and wait for that child transfer to end. Exactly once: the
// child is keyed by ChildKey, so a rerun waits for the same child.
func runTransfer(ctx context.Context, c *call) (Result, error) {
	if c.env.StartChild == nil || c.env.WaitChild == nil {
		return Result{}, errors.New("this node cannot start transfers")
	}
	if c.facts.TaskKey == "" {
		return Result{}, errors.New("no task key: a rerun could not find the child transfer")
	}
	src, err := c.source()
	if err != nil {
		return Result{}, err
	}
	if there, err := c.exists(src); err != nil {
		return Result{}, err
	} else if !there {
		return Result{}, fmt.Errorf("file %s does not exist", src)
	}
	child := Child{
		Key:     ChildKey(c.facts.TransferID, c.facts.TaskKey),
		Rule:    c.args.str("rule"),
		Partner: c.args.str("to"),
		Account: c.args.str("as"),
		File:    src,
		Remote:  c.nameOf(src),
	}
	id, err := c.env.StartChild(ctx, child)
	if err != nil {
		return Result{}, fmt.Errorf("start the transfer to %s: %w", child.Partner, err)
	}
	if err := c.env.WaitChild(ctx, id); err != nil {
		return Result{}, fmt.Errorf("transfer %d to %s: %w", id, child.Partner, err)
	}
	return Result{Output: fmt.Sprintf("transfer %d sent %s to %s", id, src, child.Partner)}, nil
}
