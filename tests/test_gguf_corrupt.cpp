// corrupt-file suite: being written
