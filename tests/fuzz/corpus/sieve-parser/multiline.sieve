require "vacation";
vacation :days 7 :subject "away" text:
I am away.
..
.
;
