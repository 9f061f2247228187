// Package kit is what the shop's services share: their dependencies, a
// JSON store over a JetStream key-value bucket of their own, schema-checked
// event handlers, and request/reply endpoints for the gateway's commands.
package kit
