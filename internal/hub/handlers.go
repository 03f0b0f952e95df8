package hub

import "k8s.io/client-go/tools/cache"

// Handlers are the informer handlers every controller here registers:
// changed sees an add as a change from nothing (old nil) and each update as
// (old, cur); deleted, when not nil, gets the last known state (maybe a
// tombstone: see Object).
func Handlers(changed func(old, cur any), deleted func(obj any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { changed(nil, obj) },
		UpdateFunc: changed,
		DeleteFunc: deleted,
	}
}

// Latest adapts a handler of the current object alone to Handlers' changed.
func Latest(f func(cur any)) func(old, cur any) {
	return func(_, cur any) { f(cur) }
}
