require ["vacation","enotify","reject"];
vacation :subject "=?utf-8?q?x?=" :from "A <a@b.c>" :addresses ["b@example.net"] "r";
notify :importance "3" :message "m" "mailto:a@b.c,d@e.f?cc=g@h.i&subject=s&body=b";
