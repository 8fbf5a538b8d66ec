package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// chatText is what `helpmesh chat` itself says to a visitor, in the chat's
// language: a visitor who asked for Norwegian should not meet English in a
// crisis. The wording follows the web chat's catalogues (api/web/i18n); the
// texts are in chattext.json, one object per language with these fields'
// names (json matches them without regard to case).
type chatText struct {
	// lang is the visitor's language code, which picks the emergency
	// numbers' names (consensus.EmergencyNumber.NameIn).
	lang   string
	Intro  string // how to use the client
	Queued string // position
	// The wait estimate (docs/api.md, the queued frame): the line says
	// Queued, then Estimated and one of these.
	Estimated, WaitFree, WaitMinute, WaitMinutes, WaitLong, WaitSeveral string
	Connected                                                           string // alias
	Volunteer                                                           string // the label of the volunteer's messages
	Typing                                                              string
	Pending                                                             string // a line typed before anyone joined
	Ended                                                               string // the conversation is over, whoever ended it
	Requeued                                                            string // undelivered count
	Closed                                                              string // the centre closed the chat
	Lost                                                                string // the connection broke
	NotSent                                                             string // the server's reason
	QueueFull                                                           string
	NoticeFull                                                          string // followed by the emergency numbers
	NoticeBusy                                                          string
	NoticeClose                                                         string
}

//go:embed chattext.json
var chatTextJSON []byte

// chatTexts is chattext.json by language code; it is read once, and a
// catalogue that does not decode is a build mistake (TestChatTextsComplete).
var chatTexts = func() map[string]chatText {
	var m map[string]chatText
	if err := json.Unmarshal(chatTextJSON, &m); err != nil {
		panic(fmt.Errorf("cmd/helpmesh: chattext.json: %w", err))
	}
	return m
}()

// chatTextFor is the client's wording for lang, English when it has none.
func chatTextFor(lang string) chatText {
	tx, ok := chatTexts[lang]
	if !ok {
		tx = chatTexts["en"]
	}
	tx.lang = lang
	return tx
}
