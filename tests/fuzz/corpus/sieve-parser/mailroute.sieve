require ["vnd.mailroute","body","envelope"];
if body :contains "hello" { route :relay "r1"; webhook "w"; }
if size :over 10M { reject_code "552" "5.3.4" "too big"; }
redirect :copy "archive@example.com";
