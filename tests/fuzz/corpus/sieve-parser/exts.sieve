require ["include","date","relational","imap4flags","editheader","enotify","duplicate"];
include "inc";
if date :value "ge" :originalzone "date" "year" "1990" { addflag "\\Seen"; addheader "X-A" "b"; }
if not duplicate { notify "mailto:x@y.org"; }
