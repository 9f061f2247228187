package saga

// SetHookBeforeAck installs a hook that runs after an outcome is recorded
// and before its message is acknowledged; nil removes it.
func SetHookBeforeAck(h func(*State)) {
	if h == nil {
		testHookBeforeAck.Store(nil)
		return
	}
	testHookBeforeAck.Store(&h)
}
