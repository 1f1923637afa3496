package transfer

import (
	"context"
	"net"
	"time"
)

// localAddr is where connections to partners leave from: the service
// address with [vip] SourceAddress (so that a partner's allow-list names one
// IP across failovers), else nil and the kernel chooses.
func (e *Engine) localAddr() net.Addr {
	if e.cfg.SourceAddr == nil {
		return nil
	}
	return &net.TCPAddr{IP: e.cfg.SourceAddr}
}

// dialer is how tasks (WEBHOOK) connect out: from SourceAddr when set;
// nil leaves them the default.
func (e *Engine) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if e.cfg.SourceAddr == nil {
		return nil
	}
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: e.localAddr()}
	return d.DialContext
}
