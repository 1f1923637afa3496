package transfer

import "net"

// localAddr is where connections to partners leave from: the service
// address with [vip] SourceAddress (so that a partner's allow-list names one
// IP across failovers), else nil and the kernel chooses.
func (e *Engine) localAddr() net.Addr {
	if e.cfg.SourceAddr == nil {
		return nil
	}
	return &net.TCPAddr{IP: e.cfg.SourceAddr}
}
