require ["fileinto","envelope"];
if header :contains "subject" "invoice" { fileinto "Billing"; }
elsif envelope :is "from" "a@b.c" { discard; } else { keep; }
