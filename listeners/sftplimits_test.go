package listeners

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"
	"testing"
)

// fakeChannel is the client's side of an SFTP channel: what the client
// sent, and what the server wrote.
type fakeChannel struct {
	in  io.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *fakeChannel) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *fakeChannel) Close() error               { return nil }
func (c *fakeChannel) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *fakeChannel) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.out.Bytes()...)
}

func packet(typ byte, body ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0)
	b = append(b, typ)
	for _, x := range body {
		b = append(b, x...)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func str(s string) []byte { return appendString(nil, s) }

func TestLimitsStream(t *testing.T) {
	const fxpInit, fxpStat, fxpData = 1, 17, 103
	initPkt := packet(fxpInit, u32(3))
	limits := packet(fxpExtended, u32(7), str(limitsExtension))
	statvfs := packet(fxpExtended, u32(8), str("statvfs@openssh.com"), str("/"))
	stat := packet(fxpStat, u32(9), str("/some/file"))
	client := bytes.Join([][]byte{initPkt, limits, statvfs, stat}, nil)
	ch := &fakeChannel{in: bytes.NewReader(client)}
	s := newLimitsStream(ch)

	// The server reads the client's packets with io.ReadFull, in pieces.
	read := func(n int) []byte {
		t.Helper()
		b := make([]byte, n)
		if _, err := io.ReadFull(s, b); err != nil {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		return b
	}
	if got := read(len(initPkt)); !bytes.Equal(got, initPkt) {
		t.Fatalf("INIT passed as %x", got)
	}

	// Its VERSION packet, written whole, goes out with the extension.
	version := packet(fxpVersion, u32(3), str("posix-rename@openssh.com"), str("1"))
	if n, err := s.Write(version); n != len(version) || err != nil {
		t.Fatalf("Write(VERSION) = %d, %v", n, err)
	}
	want := packet(fxpVersion, u32(3), str("posix-rename@openssh.com"), str("1"), str(limitsExtension), str("1"))
	if got := ch.written(); !bytes.Equal(got, want) {
		t.Fatalf("VERSION on the wire %x, want %x", got, want)
	}

	// A reply is half written (header, then payload) when the limits
	// request arrives: its answer waits for the end of that packet.
	payload := bytes.Repeat([]byte{0xab}, 1000)
	data := packet(fxpData, u32(5), u32(uint32(len(payload))), payload)
	head := data[:len(data)-len(payload)]
	if _, err := s.Write(head[:3]); err != nil { // even a split length
		t.Fatal(err)
	}
	if _, err := s.Write(head[3:]); err != nil {
		t.Fatal(err)
	}
	// The limits request is answered, not passed on: the server reads the
	// statvfs request next, then the stat.
	if got := read(len(statvfs)); !bytes.Equal(got, statvfs) {
		t.Fatalf("after the limits request the server read %x, want the statvfs request", got)
	}
	if got := ch.written()[len(want):]; !bytes.Equal(got, head) {
		t.Fatalf("limits reply written inside a packet: %x", got)
	}
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	reply := packet(fxpExtendedReply, u32(7), binary.BigEndian.AppendUint64(nil, sftpMaxPacket),
		binary.BigEndian.AppendUint64(nil, sftpMaxData), binary.BigEndian.AppendUint64(nil, sftpMaxData),
		binary.BigEndian.AppendUint64(nil, sftpMaxHandles))
	if got := ch.written()[len(want):]; !bytes.Equal(got, append(append([]byte(nil), data...), reply...)) {
		t.Fatalf("after the data packet the wire has %x", got)
	}
	if got := read(len(stat)); !bytes.Equal(got, stat) {
		t.Fatalf("STAT passed as %x", got)
	}
	if n, err := s.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end = %d, %v; want EOF", n, err)
	}
}
