package listeners

import (
	"encoding/binary"
	"io"
	"sync"
)

// The limits@openssh.com extension tells OpenSSH's sftp client (8.7 and
// later) how much to read or write per request. Without it the client
// falls back to 32 KiB requests, which cost the client, the server and the
// SSH layer eight times the packets, syscalls and buffers per byte that
// OpenSSH's own sftp-server asks for: the gateway's download ran at about
// 0.7× OpenSSH before it announced them. pkg/sftp neither announces nor
// answers the extension, so limitsStream does both on the channel under
// its RequestServer. The values are sftp-server's: packets up to 256 KiB
// (pkg/sftp's own maximum for what it receives), 255 KiB of data per
// request; the RequestServer is told to answer reads that large.
const (
	sftpMaxPacket  = 256 << 10
	sftpMaxData    = sftpMaxPacket - 1024
	sftpMaxHandles = 1024

	limitsExtension = "limits@openssh.com"

	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201
)

// limitsStream wraps an SFTP channel: it adds limits@openssh.com to the
// server's VERSION packet and answers the client's limits requests itself;
// every other byte passes through unchanged. Reads come from one goroutine
// (the RequestServer's receive loop); writes are serialised with the
// replies it injects, which go out only between two whole packets.
type limitsStream struct {
	ch io.ReadWriteCloser

	// Read side: the packet being passed through.
	head  [5]byte
	rbuf  []byte // bytes read ahead and not yet returned
	rleft int    // bytes of the current packet still in the channel

	// Write side, under wmu.
	wmu         sync.Mutex
	wleft       int    // bytes of the current outgoing packet not yet written
	whead       []byte // the start of a packet whose length is not known yet
	versionSent bool
	replies     [][]byte // limits replies waiting for a packet boundary
}

func newLimitsStream(ch io.ReadWriteCloser) *limitsStream { return &limitsStream{ch: ch} }

func (s *limitsStream) Close() error { return s.ch.Close() }

// Read returns the client's packets, less the limits requests.
func (s *limitsStream) Read(p []byte) (int, error) {
	for len(s.rbuf) == 0 && s.rleft == 0 {
		if err := s.nextPacket(); err != nil {
			return 0, err
		}
	}
	if len(s.rbuf) > 0 {
		n := copy(p, s.rbuf)
		s.rbuf = s.rbuf[n:]
		return n, nil
	}
	n, err := s.ch.Read(p[:min(len(p), s.rleft)])
	s.rleft -= n
	if err == io.EOF && s.rleft > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// nextPacket reads the next packet's length and type; an extended request
// is read whole, and answered here when it asks for the limits.
func (s *limitsStream) nextPacket() error {
	head := s.head[:]
	if _, err := io.ReadFull(s.ch, head); err != nil {
		return err
	}
	length := int(binary.BigEndian.Uint32(head))
	if length == 0 || head[4] != fxpExtended || length > sftpMaxPacket {
		// Not ours (pkg/sftp refuses bad lengths itself).
		s.rbuf, s.rleft = head, max(length-1, 0)
		return nil
	}
	body := make([]byte, length-1)
	if _, err := io.ReadFull(s.ch, body); err != nil {
		return err
	}
	if len(body) >= 8 {
		id := binary.BigEndian.Uint32(body)
		if n := int(binary.BigEndian.Uint32(body[4:])); n == len(limitsExtension) && len(body) >= 8+n && string(body[8:8+n]) == limitsExtension {
			return s.reply(limitsReply(id))
		}
	}
	s.rbuf = append(append(make([]byte, 0, 5+len(body)), head...), body...)
	return nil
}

func limitsReply(id uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1+4+4*8)
	b = append(b, fxpExtendedReply)
	b = binary.BigEndian.AppendUint32(b, id)
	for _, v := range []uint64{sftpMaxPacket, sftpMaxData, sftpMaxData, sftpMaxHandles} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// reply sends b at once if no packet is half written, else after it.
func (s *limitsStream) reply(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.wleft > 0 || len(s.whead) > 0 {
		s.replies = append(s.replies, b)
		return nil
	}
	_, err := s.ch.Write(b)
	return err
}

// Write passes the server's packets on, with the limits announced in its
// VERSION packet (written whole by pkg/sftp).
func (s *limitsStream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.versionSent && s.wleft == 0 && len(s.whead) == 0 && len(p) >= 5 && p[4] == fxpVersion &&
		int(binary.BigEndian.Uint32(p))+4 == len(p) {
		s.versionSent = true
		v := append([]byte(nil), p...)
		v = appendString(v, limitsExtension)
		v = appendString(v, "1")
		binary.BigEndian.PutUint32(v, uint32(len(v)-4))
		if _, err := s.ch.Write(v); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	n, err := s.ch.Write(p)
	s.track(p[:n])
	if err != nil {
		return n, err
	}
	if s.wleft == 0 && len(s.whead) == 0 {
		for len(s.replies) > 0 {
			if _, err := s.ch.Write(s.replies[0]); err != nil {
				return n, err
			}
			s.replies = s.replies[1:]
		}
	}
	return n, nil
}

// track follows packet boundaries through the bytes written.
func (s *limitsStream) track(p []byte) {
	for len(p) > 0 {
		if s.wleft > 0 {
			k := min(s.wleft, len(p))
			s.wleft -= k
			p = p[k:]
			continue
		}
		k := min(4-len(s.whead), len(p))
		s.whead = append(s.whead, p[:k]...)
		p = p[k:]
		if len(s.whead) == 4 {
			s.wleft = int(binary.BigEndian.Uint32(s.whead))
			s.whead = s.whead[:0]
		}
	}
}

func appendString(b []byte, str string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(str)))
	return append(b, str...)
}
