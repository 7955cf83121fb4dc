"""An example Flower App for the fleet: your own strategy loop, our building blocks."""
