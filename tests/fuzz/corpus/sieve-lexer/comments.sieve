/* c */ if anyof (size :over 1M, not exists ["From","Date"]) { stop; } # end
