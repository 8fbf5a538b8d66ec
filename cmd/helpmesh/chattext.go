package main

// chatText is what `helpmesh chat` itself says to a visitor, in the chat's
// language: a visitor who asked for Norwegian should not meet English in a
// crisis. The wording follows the web chat's catalogues (api/web/i18n).
type chatText struct {
	// lang is the visitor's language code, which picks the emergency
	// numbers' names (consensus.EmergencyNumber.NameIn).
	lang   string
	intro  string // how to use the client
	queued string // position
	// The wait estimate (docs/api.md, the queued frame): the line says
	// queued, then estimated and one of these.
	estimated, waitFree, waitMinute, waitMinutes, waitLong, waitSeveral string
	connected                                                           string // alias
	volunteer                                                           string // the label of the volunteer's messages
	typing                                                              string
	pending                                                             string // a line typed before anyone joined
	ended                                                               string // the conversation is over, whoever ended it
	requeued                                                            string // undelivered count
	closed                                                              string // the centre closed the chat
	lost                                                                string // the connection broke
	notSent                                                             string // the server's reason
	queueFull                                                           string
	noticeFull                                                          string // followed by the emergency numbers
	noticeBusy                                                          string
	noticeClose                                                         string
}

// chatTextFor is the client's wording for lang, English when it has none.
func chatTextFor(lang string) chatText {
	tx := chatTextIn(lang)
	tx.lang = lang
	return tx
}

func chatTextIn(lang string) chatText {
	switch lang {
	default:
		return chatText{
			intro:     "Connected to the helpline. Type a message and press Enter; /end leaves.",
			queued:    "[You are number %v in the queue",
			estimated: "; estimated wait: ", waitFree: "less than a minute", waitMinute: "about 1 minute",
			waitMinutes: "about %d minutes", waitLong: "more than %d minutes", waitSeveral: "several minutes",
			connected:   "[You are talking with %v.]",
			volunteer:   "volunteer",
			typing:      "[The volunteer is writing…]",
			pending:     "[No one has joined yet; your message will be sent when a volunteer joins.]",
			ended:       "The conversation has ended. Take good care of yourself.",
			requeued:    "[The connection to the volunteer was lost. You are first in the queue again (%v of your messages may not have arrived).]",
			closed:      "The helpline closed the chat. You can start a new one.",
			lost:        "The connection was lost. You can start a new chat.",
			notSent:     "[Your message could not be sent: %v]",
			queueFull:   "Everyone is busy and the queue is full right now. Please try again in a few minutes.",
			noticeFull:  "The queue is full right now. If you need help straight away, call:",
			noticeBusy:  "No one is free right now, but you keep your place in the queue. If you need help straight away, call:",
			noticeClose: "The chat is closed right now. If you need help straight away, call:",
		}
	case "nb":
		return chatText{
			intro:     "Koblet til. Skriv en melding og trykk Enter; /end avslutter.",
			queued:    "[Du er nummer %v i køen",
			estimated: "; ventetid: ", waitFree: "mindre enn ett minutt", waitMinute: "omtrent 1 minutt",
			waitMinutes: "omtrent %d minutter", waitLong: "mer enn %d minutter", waitSeveral: "flere minutter",
			connected:   "[Du snakker med %v.]",
			volunteer:   "frivillig",
			typing:      "[Den frivillige skriver …]",
			pending:     "[Ingen er her ennå; meldingen sendes når en frivillig er klar.]",
			ended:       "Samtalen er avsluttet. Ta godt vare på deg selv.",
			requeued:    "[Forbindelsen til den frivillige ble brutt. Du er først i køen igjen (%v av meldingene dine kom kanskje ikke fram).]",
			closed:      "Tjenesten avsluttet chatten. Du kan starte en ny.",
			lost:        "Forbindelsen ble brutt. Du kan starte en ny chat.",
			notSent:     "[Meldingen kunne ikke sendes: %v]",
			queueFull:   "Alle er opptatt og køen er full akkurat nå. Prøv igjen om noen minutter.",
			noticeFull:  "Køen er full akkurat nå. Trenger du hjelp med en gang, ring:",
			noticeBusy:  "Ingen er ledige akkurat nå, men du beholder plassen i køen. Trenger du hjelp med en gang, ring:",
			noticeClose: "Chatten er stengt akkurat nå. Trenger du hjelp med en gang, ring:",
		}
	case "nn":
		return chatText{
			intro:     "Kopla til. Skriv ei melding og trykk Enter; /end avsluttar.",
			queued:    "[Du er nummer %v i køen",
			estimated: "; ventetid: ", waitFree: "mindre enn eitt minutt", waitMinute: "om lag 1 minutt",
			waitMinutes: "om lag %d minutt", waitLong: "meir enn %d minutt", waitSeveral: "fleire minutt",
			connected:   "[Du snakkar med %v.]",
			volunteer:   "frivillig",
			typing:      "[Den frivillige skriv …]",
			pending:     "[Ingen er her enno; meldinga blir send når ein frivillig er klar.]",
			ended:       "Samtalen er avslutta. Ta godt vare på deg sjølv.",
			requeued:    "[Sambandet til den frivillige vart brote. Du er først i køen igjen (%v av meldingane dine kom kanskje ikkje fram).]",
			closed:      "Tenesta avslutta chatten. Du kan starte ein ny.",
			lost:        "Sambandet vart brote. Du kan starte ein ny chat.",
			notSent:     "[Meldinga kunne ikkje sendast: %v]",
			queueFull:   "Alle er opptekne og køen er full akkurat no. Prøv igjen om nokre minutt.",
			noticeFull:  "Køen er full akkurat no. Treng du hjelp med ein gong, ring:",
			noticeBusy:  "Ingen er ledige akkurat no, men du held på plassen i køen. Treng du hjelp med ein gong, ring:",
			noticeClose: "Chatten er stengd akkurat no. Treng du hjelp med ein gong, ring:",
		}
	}
}
