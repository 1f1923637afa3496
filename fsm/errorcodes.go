package fsm

// Transfer error codes, as Waarp Gateway names them, so that its users read
// a transfer's errorCode as they are used to. The engine (transfer) picks
// one from the cause of a failure; whether the failure is retried depends
// on the cause, not only on the code (see transfer.Classify).
const (
	// TeInternal: the gateway itself failed (its state, its secrets).
	TeInternal = "TeInternal"
	// TeConnection: the partner could not be reached (refused, timed out,
	// unreachable).
	TeConnection = "TeConnection"
	// TeConnectionReset: an established connection broke (reset, closed,
	// cut by a failover).
	TeConnectionReset = "TeConnectionReset"
	// TeUnknownRemote: the partner or remote account is not known (deleted,
	// or its host name does not resolve).
	TeUnknownRemote = "TeUnknownRemote"
	// TeBadAuthentication: either side's identity was refused: the partner's
	// host key or TLS certificate is not the configured one, or the partner
	// refused the remote account's credentials.
	TeBadAuthentication = "TeBadAuthentication"
	// TeFileNotFound: the file to send or to fetch does not exist.
	TeFileNotFound = "TeFileNotFound"
	// TeForbidden: a path may not be read or written (permissions, DataDir).
	TeForbidden = "TeForbidden"
	// TeBadSize: the destination does not hold the bytes sent.
	TeBadSize = "TeBadSize"
	// TeDataTransfer: the transfer failed for another reason.
	TeDataTransfer = "TeDataTransfer"
	// TeShuttingDown: the node stopped serving while the transfer ran.
	TeShuttingDown = "TeShuttingDown"
	// TeExternalOperation: a task of the rule's chain failed.
	TeExternalOperation = "TeExternalOperation"
)
