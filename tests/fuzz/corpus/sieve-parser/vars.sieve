require ["variables","encoded-character","regex"];
set :upper "x" "${hex:41 42}";
if header :regex "subject" "(h)(i)" { set "y" "${1}${2}"; }
