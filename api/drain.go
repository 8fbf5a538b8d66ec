package api

// What a visitor's page is told while its centre drains for a restart
// (see switchboard.Drain): the chat was not started, so it can simply try
// again, here after the restart or at another centre.
const (
	drainMessage           = "this centre is restarting and takes no new chats for a moment; please try again"
	drainRetryAfterSeconds = 10
)
