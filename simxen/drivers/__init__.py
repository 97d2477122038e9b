"""simxen.drivers"""
