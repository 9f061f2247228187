package kit

// AsReplicated has a store read as it does a bucket with replicas, where
// a get may come from one that lags: for tests on one server.
func AsReplicated(s *Store) { s.replicated = true }
